// Softmax and log-softmax over the last dim of contiguous [M, N], and their backward.
//
// Forward per row: m = max, s = sum exp(x - m) (accumulated in double),
//   softmax = exp(x - m) / s,  log_softmax = x - m - log s.
// A row that is all -inf gives NaN, as in PyTorch (0/0: there is no distribution).
// exp runs through Eigen's vectorised array exp (within 1-2 ulp; libm's scalar exp
// does not vectorise and made this kernel ~4x slower); the max and the sums use
// `omp simd` reductions, which allow the reordering the compiler may not do alone.
// Backward per row (y is the forward output):
//   softmax:      grad_in = y * (g - sum(g * y))
//   log_softmax:  grad_in = g - exp(y) * sum(g)
// Attention's masked softmax (the GEMM path's): the same forward over the visible keys
// of each row only, hidden keys 0, and the row's log-sum-exp (-inf when nothing is
// visible: a zero row rather than softmax's NaN).
#define EIGEN_DONT_PARALLELIZE  // as every file that includes Eigen (tensor/cpu/gemm_eigen.inl)
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "tensor/cpu/convert.h"
#include "tensor/cpu/cpu_backend.h"

namespace mms::cpu {

namespace {

template <typename T>
void softmax_row(const T* x, T* y, int64_t n, bool log) {
  T top = x[0];
#pragma omp simd reduction(max : top)
  for (int64_t j = 0; j < n; ++j) top = x[j] > top ? x[j] : top;
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  Eigen::Map<const Array> in(x, n);
  Eigen::Map<Array> out(y, n);
  out = (in - top).exp();  // exp once, into y
  double total = 0.0;
#pragma omp simd reduction(+ : total)
  for (int64_t j = 0; j < n; ++j) total += y[j];
  if (log) {
    const T shift = top + static_cast<T>(std::log(total));
    for (int64_t j = 0; j < n; ++j) y[j] = x[j] - shift;
  } else {
    // Eigen's vectorised exp(-inf) is a denormal (~1e-309), not 0: a -inf input (a masked
    // score) gets exactly 0, as exp defines. An all -inf row stays NaN (top is -inf there).
    const T inv = static_cast<T>(1.0 / total);
    const bool finite_top = top != -std::numeric_limits<T>::infinity();
    for (int64_t j = 0; j < n; ++j)
      y[j] = finite_top && x[j] == -std::numeric_limits<T>::infinity() ? T(0) : y[j] * inv;
  }
}

template <typename T>
void softmax_backward_row(const T* g, const T* y, T* gi, int64_t n, bool log) {
  double total = 0.0;
  if (log) {
#pragma omp simd reduction(+ : total)
    for (int64_t j = 0; j < n; ++j) total += g[j];
    const T sum_g = static_cast<T>(total);
    for (int64_t j = 0; j < n; ++j) gi[j] = g[j] - std::exp(y[j]) * sum_g;
  } else {
#pragma omp simd reduction(+ : total)
    for (int64_t j = 0; j < n; ++j) total += static_cast<double>(g[j]) * y[j];
    const T dot = static_cast<T>(total);
    for (int64_t j = 0; j < n; ++j) gi[j] = y[j] * (g[j] - dot);
  }
}

// One row of attention's masked softmax: keys [0, limit) are candidates (causal stops
// at the query), and keep (when given) hides padded ones. shifted is scratch of lk
// values: S - max at visible keys, -inf elsewhere, exponentiated in place.
template <typename T, typename P>
T attention_softmax_row(const T* s, const uint8_t* keep, int64_t limit, int64_t lk, T* shifted, P* p) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  T top = kNegInf;
  for (int64_t j = 0; j < limit; ++j)
    if ((keep == nullptr || keep[j] != 0) && s[j] > top) top = s[j];
  if (top == kNegInf) {  // nothing visible (or every visible score is -inf)
    for (int64_t j = 0; j < lk; ++j) p[j] = convert_value<P>(T(0));
    return kNegInf;
  }
  auto visible = [&](int64_t j) { return j < limit && (keep == nullptr || keep[j] != 0); };
  for (int64_t j = 0; j < lk; ++j) shifted[j] = visible(j) ? s[j] - top : kNegInf;
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  Eigen::Map<Array> e(shifted, lk);
  e = e.exp();  // Eigen's exp(-inf) is a denormal, not 0: hidden keys are zeroed below
  double total = 0.0;
  for (int64_t j = 0; j < lk; ++j)
    if (visible(j)) total += shifted[j];
  const T inv = static_cast<T>(1.0 / total);
  for (int64_t j = 0; j < lk; ++j) p[j] = convert_value<P>(visible(j) ? shifted[j] * inv : T(0));
  return top + static_cast<T>(std::log(total));
}

struct Rows {
  int64_t rows, width;
};

Rows row_layout(const char* op, const Tensor& x, const Tensor& out) {
  check_contiguous(op, "input", x);
  check_contiguous(op, "output", out);
  MMS_CHECK(x.shape() == out.shape(), op, ": output shape ", shape_str(out.shape()),
            " differs from input shape ", shape_str(x.shape()));
  MMS_CHECK(x.dtype() == out.dtype(), op, ": output dtype ", dtype_name(out.dtype()),
            " differs from input dtype ", dtype_name(x.dtype()));
  MMS_CHECK(x.dim() >= 1, op, ": input must have at least one dim");
  const int64_t width = x.shape().back();
  return {width == 0 ? 0 : x.numel() / width, width};
}

}  // namespace

void CpuBackend::softmax_last(const Tensor& x, Tensor& out, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  const Rows r = row_layout(op, x, out);
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* in = x.data<T>();
    T* res = out.data<T>();
    parallel_rows(r.rows, r.rows * r.width, [&](int64_t begin, int64_t end) {
      for (int64_t m = begin; m < end; ++m) softmax_row(in + m * r.width, res + m * r.width, r.width, log);
    });
  });
}

void CpuBackend::softmax_last_backward(const Tensor& grad_out, const Tensor& y, Tensor& grad_in,
                                       bool log) {
  const char* op = log ? "log_softmax_backward" : "softmax_backward";
  const Rows r = row_layout(op, y, grad_in);
  check_contiguous(op, "grad_out", grad_out);
  MMS_CHECK(grad_out.shape() == y.shape() && grad_out.dtype() == y.dtype(), op,
            ": grad_out ", shape_str(grad_out.shape()), " ", dtype_name(grad_out.dtype()),
            " does not match the output ", shape_str(y.shape()), " ", dtype_name(y.dtype()));
  dispatch_floating(y.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* g = grad_out.data<T>();
    const T* py = y.data<T>();
    T* gi = grad_in.data<T>();
    parallel_rows(r.rows, r.rows * r.width, [&](int64_t begin, int64_t end) {
      for (int64_t m = begin; m < end; ++m) {
        const int64_t at = m * r.width;
        softmax_backward_row(g + at, py + at, gi + at, r.width, log);
      }
    });
  });
}

void CpuBackend::attention_softmax(const Tensor& scores, const Tensor& key_keep, bool causal, Tensor& probs,
                                   Tensor& lse) {
  const char* op = "attention_softmax";
  check_contiguous(op, "scores", scores);
  check_contiguous(op, "probs", probs);
  MMS_CHECK(scores.dim() == 4, op, ": scores must be [B, H, Lq, Lk], got ", shape_str(scores.shape()));
  MMS_CHECK(probs.shape() == scores.shape(), op, ": probs ", shape_str(probs.shape()), " differs from scores ",
            shape_str(scores.shape()));
  MMS_CHECK(probs.dtype() == scores.dtype() || probs.dtype() == DType::BFloat16, op, ": probs must be ",
            dtype_name(scores.dtype()), " or bfloat16, got ", dtype_name(probs.dtype()));
  const int64_t batch = scores.size(0), heads = scores.size(1), lq = scores.size(2), lk = scores.size(3);
  if (key_keep.defined()) {
    check_contiguous(op, "key_keep", key_keep);
    MMS_CHECK(key_keep.dtype() == DType::Bool || key_keep.dtype() == DType::UInt8, op,
              ": key_keep must be bool or uint8, got ", dtype_name(key_keep.dtype()));
    MMS_CHECK(key_keep.shape() == Shape({batch, lk}), op, ": key_keep ", shape_str(key_keep.shape()),
              " must be [", batch, ", ", lk, "]");
  }
  if (lse.defined()) {
    check_contiguous(op, "lse", lse);
    MMS_CHECK(lse.dtype() == scores.dtype() && lse.shape() == Shape({batch, heads, lq}), op, ": lse must be ",
              dtype_name(scores.dtype()), " [", batch, ", ", heads, ", ", lq, "], got ",
              dtype_name(lse.dtype()), " ", shape_str(lse.shape()));
  }
  const int64_t rows = batch * heads * lq;
  if (rows == 0 || lk == 0) {
    if (lse.defined()) fill(lse, -std::numeric_limits<double>::infinity());
    return;
  }
  const uint8_t* keep = key_keep.defined() ? static_cast<const uint8_t*>(key_keep.raw_data()) : nullptr;
  dispatch_floating(scores.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* s = scores.data<T>();
    T* row_lse = lse.defined() ? lse.data<T>() : nullptr;
    auto run = [&](auto* p) {
      parallel_rows(rows, rows * lk, [&](int64_t begin, int64_t end) {
        std::vector<T> shifted(static_cast<size_t>(lk));  // scratch, once per range
        for (int64_t r = begin; r < end; ++r) {
          const int64_t query = r % lq, b = r / (lq * heads);
          const int64_t limit = causal ? std::min(lk, query + 1) : lk;
          const T value = attention_softmax_row(s + r * lk, keep ? keep + b * lk : nullptr, limit, lk,
                                                shifted.data(), p + r * lk);
          if (row_lse) row_lse[r] = value;
        }
      });
    };
    if (probs.dtype() == DType::BFloat16) {
      MMS_CHECK(scores.dtype() == DType::Float32, op, ": bfloat16 probs come from float32 scores, got ",
                dtype_name(scores.dtype()));
      run(probs.data<BFloat16>());
    } else {
      run(probs.data<T>());
    }
  });
}

}  // namespace mms::cpu
