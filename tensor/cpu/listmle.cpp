// ListMLE (Xia et al., 2008): the negative log-likelihood of the gold ranking under the
// Plackett-Luce model of the scores. For one list with n valid items and s_k the score
// of the item at rank k (k = 0 best):
//   loss = sum_{k<n} [ LSE_k - s_k ],     LSE_k = log sum_{j=k}^{n-1} exp(s_j)
//   d loss / d s_m = sum_{k<=m} exp(s_m - LSE_k) - 1
// (s_m appears in every suffix k <= m, each contributing its softmax probability).
//
// Stability, with no epsilon anywhere:
//  - LSE_k right to left with a running max: r holds sum exp(s_j - top) over the
//    suffix; a new larger score rescales r instead of overflowing.
//  - the gradient left to right keeps A_m = log sum_{k<=m} exp(-LSE_k) by log-add, so
//    grad_m = exp(s_m + A_m) - 1, where s_m + A_m <= log(m + 1) never overflows.
// Lists with fewer than two items have zero loss and zero gradient.
#include <cmath>
#include <limits>
#include <vector>

#include "tensor/cpu/cpu_backend.h"

namespace mms::cpu {

namespace {

// log(exp(a) + exp(b)) for a >= -inf, exact when one side is -inf.
inline double log_add_exp(double a, double b) {
  if (a < b) std::swap(a, b);
  if (b == -std::numeric_limits<double>::infinity()) return a;
  return a + std::log1p(std::exp(b - a));
}

// One list: s [n] in rank order; writes suffix LSEs into lse [n]; returns the loss and
// writes the gradient in rank order into grad [n].
double listmle_one(const double* s, int64_t n, double* lse, double* grad) {
  double top = -std::numeric_limits<double>::infinity();
  double r = 0.0;  // sum over the suffix of exp(s_j - top)
  double loss = 0.0;
  for (int64_t k = n - 1; k >= 0; --k) {
    if (s[k] > top) {
      r = r * std::exp(top - s[k]) + 1.0;  // exp(-inf) = 0 on the first item
      top = s[k];
    } else {
      r += std::exp(s[k] - top);
    }
    lse[k] = top + std::log(r);
    loss += lse[k] - s[k];
  }
  double log_acc = -std::numeric_limits<double>::infinity();  // A_m
  for (int64_t m = 0; m < n; ++m) {
    log_acc = log_add_exp(log_acc, -lse[m]);
    grad[m] = std::exp(s[m] + log_acc) - 1.0;
  }
  return loss;
}

template <typename T>
void listmle_typed(const T* scores, const int64_t* order, const int64_t* lengths, T* loss,
                   T* grad, int64_t lists, int64_t width) {
  parallel_rows(lists, lists * width * 8, [&](int64_t begin, int64_t end) {
    // scratch per range, sized once: scores in rank order, suffix LSEs, gradients
    std::vector<double> s(width), lse(width), g(width);
    for (int64_t b = begin; b < end; ++b) {
      const T* row = scores + b * width;
      const int64_t* rank = order + b * width;
      T* grad_row = grad + b * width;
      for (int64_t j = 0; j < width; ++j) grad_row[j] = T(0);  // invalid items stay 0
      const int64_t n = lengths[b];
      if (n < 2) {
        loss[b] = T(0);
        continue;
      }
      for (int64_t k = 0; k < n; ++k) s[k] = row[rank[k]];
      loss[b] = static_cast<T>(listmle_one(s.data(), n, lse.data(), g.data()));
      for (int64_t k = 0; k < n; ++k) grad_row[rank[k]] = static_cast<T>(g[k]);
    }
  });
}

}  // namespace

void CpuBackend::listmle(const Tensor& scores, const Tensor& order, const Tensor& lengths,
                         Tensor& loss, Tensor& grad_scores) {
  const char* op = "listmle";
  check_contiguous(op, "scores", scores);
  check_contiguous(op, "order", order);
  check_contiguous(op, "lengths", lengths);
  check_contiguous(op, "loss", loss);
  check_contiguous(op, "grad_scores", grad_scores);
  MMS_CHECK(scores.dim() == 2, op, ": scores must be [B, K], got ", shape_str(scores.shape()));
  const int64_t lists = scores.size(0), width = scores.size(1);
  MMS_CHECK(order.dtype() == DType::Int64 && order.shape() == scores.shape(), op,
            ": order must be int64 ", shape_str(scores.shape()), ", got ",
            dtype_name(order.dtype()), " ", shape_str(order.shape()));
  MMS_CHECK(lengths.dtype() == DType::Int64 && lengths.numel() == lists, op,
            ": lengths must be int64 [", lists, "], got ", dtype_name(lengths.dtype()), " ",
            shape_str(lengths.shape()));
  MMS_CHECK(loss.numel() == lists && loss.dtype() == scores.dtype(), op, ": loss must be ",
            dtype_name(scores.dtype()), " [", lists, "], got ", dtype_name(loss.dtype()), " ",
            shape_str(loss.shape()));
  MMS_CHECK(grad_scores.shape() == scores.shape() && grad_scores.dtype() == scores.dtype(), op,
            ": grad_scores must match scores ", shape_str(scores.shape()));

  // Validate every list before the parallel loop: a length in [0, K], and its first
  // `length` order entries a permutation of distinct items in [0, K).
  const int64_t* pl = lengths.data<int64_t>();
  const int64_t* po = order.data<int64_t>();
  std::vector<int64_t> seen(width, -1);
  for (int64_t b = 0; b < lists; ++b) {
    MMS_CHECK(pl[b] >= 0 && pl[b] <= width, op, ": list ", b, " has length ", pl[b],
              " outside 0..", width);
    for (int64_t k = 0; k < pl[b]; ++k) {
      const int64_t item = po[b * width + k];
      MMS_CHECK(item >= 0 && item < width, op, ": list ", b, " order[", k, "] = ", item,
                " is out of range 0..", width - 1);
      MMS_CHECK(seen[item] != b, op, ": list ", b, " names item ", item, " twice in its order");
      seen[item] = b;
    }
  }
  dispatch_floating(scores.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    listmle_typed<T>(scores.data<T>(), po, pl, loss.data<T>(), grad_scores.data<T>(), lists,
                     width);
  });
}

}  // namespace mms::cpu
