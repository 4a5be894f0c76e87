// Fused layer norm over the last dim of contiguous x [M, N], and its backward.
//
// Forward per row (statistics in double, two passes so var is never negative):
//   mean = sum(x) / N,  var = sum((x - mean)^2) / N  (biased),  rstd = 1 / sqrt(var + eps)
//   y = (x - mean) * rstd * weight + bias
// Backward per row, with xhat = (x - mean) * rstd and h = grad_y * weight:
//   grad_x = rstd * (h - mean(h) - xhat * mean(h * xhat))
//   grad_weight = sum over rows of grad_y * xhat,  grad_bias = sum over rows of grad_y
// The column sums are per-thread partials in double, added at the end, so rows can run
// in parallel without atomics. Row sums are `omp simd` reductions: without them the
// compiler must keep the sequential order and runs one add per add-latency.
#include <cmath>
#include <vector>

#include "tensor/cpu/cpu_backend.h"

namespace mms::cpu {

namespace {

void check_vector(const char* op, const char* what, const Tensor& t, int64_t n, DType dtype) {
  if (!t.defined()) return;
  check_contiguous(op, what, t);
  MMS_CHECK(t.numel() == n && t.dtype() == dtype, op, ": ", what, " must be ", dtype_name(dtype),
            " with ", n, " elements, got ", dtype_name(t.dtype()), " ", shape_str(t.shape()));
}

template <typename T>
void layer_norm_typed(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                      Tensor& y, Tensor& mean, Tensor& rstd, int64_t rows, int64_t width) {
  const T* px = x.data<T>();
  const T* pw = weight.defined() ? weight.data<T>() : nullptr;
  const T* pb = bias.defined() ? bias.data<T>() : nullptr;
  T* py = y.data<T>();
  T* pmean = mean.data<T>();
  T* prstd = rstd.data<T>();
  auto row_range = [&](int64_t begin, int64_t end) {
  for (int64_t m = begin; m < end; ++m) {
    const T* row = px + m * width;
    T* out = py + m * width;
    double total = 0.0;
#pragma omp simd reduction(+ : total)
    for (int64_t j = 0; j < width; ++j) total += row[j];
    const double mu = total / static_cast<double>(width);
    double squares = 0.0;
#pragma omp simd reduction(+ : squares)
    for (int64_t j = 0; j < width; ++j) {
      const double d = row[j] - mu;
      squares += d * d;
    }
    const double r = 1.0 / std::sqrt(squares / static_cast<double>(width) + eps);
    pmean[m] = static_cast<T>(mu);
    prstd[m] = static_cast<T>(r);
    const T mu_t = static_cast<T>(mu), r_t = static_cast<T>(r);
    if (pw && pb) {
      for (int64_t j = 0; j < width; ++j) out[j] = (row[j] - mu_t) * r_t * pw[j] + pb[j];
    } else if (pw) {
      for (int64_t j = 0; j < width; ++j) out[j] = (row[j] - mu_t) * r_t * pw[j];
    } else if (pb) {
      for (int64_t j = 0; j < width; ++j) out[j] = (row[j] - mu_t) * r_t + pb[j];
    } else {
      for (int64_t j = 0; j < width; ++j) out[j] = (row[j] - mu_t) * r_t;
    }
  }
  };
  parallel_rows(rows, rows * width, row_range);
}

template <typename T>
void layer_norm_backward_typed(const Tensor& grad_y, const Tensor& x, const Tensor& weight,
                               const Tensor& mean, const Tensor& rstd, const Tensor& grad_x_addend,
                               Tensor& grad_x, Tensor& grad_weight, Tensor& grad_bias, int64_t rows,
                               int64_t width) {
  const T* pg = grad_y.data<T>();
  const T* px = x.data<T>();
  const T* pw = weight.defined() ? weight.data<T>() : nullptr;
  const T* pmean = mean.data<T>();
  const T* prstd = rstd.data<T>();
  T* pgx = grad_x.defined() ? grad_x.data<T>() : nullptr;
  const T* paddend = grad_x_addend.defined() ? grad_x_addend.data<T>() : nullptr;
  const bool want_w = grad_weight.defined(), want_b = grad_bias.defined();

  const bool parallel = parallel_worth_it(rows, rows * width);
  const int threads = parallel ? parallel_threads() : 1;
  // one [N] double partial per part (a fixed cut of the rows) and per column sum
  std::vector<double> partial_w(want_w ? threads * width : 0, 0.0);
  std::vector<double> partial_b(want_b ? threads * width : 0, 0.0);

  parallel_parts(threads, [&](int64_t t) {
    double* acc_w = want_w ? partial_w.data() + t * width : nullptr;
    double* acc_b = want_b ? partial_b.data() + t * width : nullptr;
    for (int64_t m = rows * t / threads; m < rows * (t + 1) / threads; ++m) {
      const T* g = pg + m * width;
      const T* row = px + m * width;
      const double mu = pmean[m], r = prstd[m];
      // Every branch is outside its loop, so each loop vectorises (with the tests
      // inside, GCC ran all of this one double at a time: 9% of a default step).
      if (acc_w && acc_b) {
#pragma omp simd
        for (int64_t j = 0; j < width; ++j) {
          acc_w[j] += static_cast<double>(g[j]) * ((row[j] - mu) * r);
          acc_b[j] += g[j];
        }
      } else if (acc_w) {
#pragma omp simd
        for (int64_t j = 0; j < width; ++j) acc_w[j] += static_cast<double>(g[j]) * ((row[j] - mu) * r);
      } else if (acc_b) {
#pragma omp simd
        for (int64_t j = 0; j < width; ++j) acc_b[j] += g[j];
      }
      if (!pgx) continue;
      // mean(h) and mean(h * xhat) over the row, h = grad_y * weight
      double sum_h = 0.0, sum_h_xhat = 0.0;
      if (pw) {
#pragma omp simd reduction(+ : sum_h, sum_h_xhat)
        for (int64_t j = 0; j < width; ++j) {
          const double h = static_cast<double>(g[j]) * pw[j];
          sum_h += h;
          sum_h_xhat += h * ((row[j] - mu) * r);
        }
      } else {
#pragma omp simd reduction(+ : sum_h, sum_h_xhat)
        for (int64_t j = 0; j < width; ++j) {
          const double h = g[j];
          sum_h += h;
          sum_h_xhat += h * ((row[j] - mu) * r);
        }
      }
      const T mean_h = static_cast<T>(sum_h / width);
      const T mean_h_xhat = static_cast<T>(sum_h_xhat / width);
      const T mu_t = static_cast<T>(mu), r_t = static_cast<T>(r);
      T* gx = pgx + m * width;
      if (pw) {
#pragma omp simd
        for (int64_t j = 0; j < width; ++j) {
          const T xhat = (row[j] - mu_t) * r_t;
          gx[j] = r_t * (g[j] * pw[j] - mean_h - xhat * mean_h_xhat);
        }
      } else {
#pragma omp simd
        for (int64_t j = 0; j < width; ++j) {
          const T xhat = (row[j] - mu_t) * r_t;
          gx[j] = r_t * (g[j] - mean_h - xhat * mean_h_xhat);
        }
      }
      // The folded addend in a pass of its own, after the row is stored: the same
      // rounding as the separate add it replaces (no multiply-add contraction across it).
      if (paddend) {
        const T* addend = paddend + m * width;
        for (int64_t j = 0; j < width; ++j) gx[j] = addend[j] + gx[j];
      }
    }
  });
  // written, not accumulated: the autograd layer adds into .grad itself
  auto reduce_partials = [&](const std::vector<double>& partial, Tensor& dst) {
    T* out = dst.data<T>();
    for (int64_t j = 0; j < width; ++j) {
      double total = 0.0;
      for (int t = 0; t < threads; ++t) total += partial[t * width + j];
      out[j] = static_cast<T>(total);
    }
  };
  if (want_w) reduce_partials(partial_w, grad_weight);
  if (want_b) reduce_partials(partial_b, grad_bias);
}

}  // namespace

void CpuBackend::layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                            Tensor& y, Tensor& mean, Tensor& rstd) {
  const char* op = "layer_norm";
  if (y.defined() && y.dtype() == DType::BFloat16 && x.dtype() == DType::Float32) {
    // autocast's bf16 activations: the float32 result, rounded once
    check_contiguous(op, "output", y);
    Tensor wide = empty(y.shape(), DType::Float32);
    layer_norm(x, weight, bias, eps, wide, mean, rstd);
    copy(wide, y);
    return;
  }
  check_contiguous(op, "input", x);
  check_contiguous(op, "output", y);
  MMS_CHECK(x.dim() >= 1 && x.shape().back() > 0, op, ": input ", shape_str(x.shape()),
            " has no last dim to normalise");
  MMS_CHECK(y.shape() == x.shape() && y.dtype() == x.dtype(), op, ": output ",
            shape_str(y.shape()), " does not match input ", shape_str(x.shape()));
  const int64_t width = x.shape().back(), rows = x.numel() / width;
  check_vector(op, "weight", weight, width, x.dtype());
  check_vector(op, "bias", bias, width, x.dtype());
  check_vector(op, "mean", mean, rows, x.dtype());
  check_vector(op, "rstd", rstd, rows, x.dtype());
  MMS_CHECK(mean.defined() && rstd.defined(), op, ": mean and rstd outputs are required");
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    layer_norm_typed<T>(x, weight, bias, eps, y, mean, rstd, rows, width);
  });
}

void CpuBackend::layer_norm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight,
                                     const Tensor& mean, const Tensor& rstd, const Tensor& grad_x_addend,
                                     Tensor& grad_x, Tensor& grad_weight, Tensor& grad_bias) {
  const char* op = "layer_norm_backward";
  if (grad_y.defined() && grad_y.dtype() == DType::BFloat16 && x.dtype() == DType::Float32) {
    // the gradient of a bf16 output (autocast's bf16 activations), widened exactly
    layer_norm_backward(widened(grad_y), x, weight, mean, rstd, grad_x_addend, grad_x, grad_weight, grad_bias);
    return;
  }
  check_contiguous(op, "input", x);
  check_contiguous(op, "grad_y", grad_y);
  MMS_CHECK(x.dim() >= 1 && x.shape().back() > 0, op, ": input ", shape_str(x.shape()),
            " has no last dim");
  MMS_CHECK(grad_y.shape() == x.shape() && grad_y.dtype() == x.dtype(), op, ": grad_y ",
            shape_str(grad_y.shape()), " does not match input ", shape_str(x.shape()));
  const int64_t width = x.shape().back(), rows = x.numel() / width;
  if (grad_x.defined()) {
    check_contiguous(op, "grad_x", grad_x);
    MMS_CHECK(grad_x.shape() == x.shape() && grad_x.dtype() == x.dtype(), op, ": grad_x ",
              shape_str(grad_x.shape()), " does not match input ", shape_str(x.shape()));
  }
  check_vector(op, "weight", weight, width, x.dtype());
  check_vector(op, "mean", mean, rows, x.dtype());
  check_vector(op, "rstd", rstd, rows, x.dtype());
  check_vector(op, "grad_weight", grad_weight, width, x.dtype());
  check_vector(op, "grad_bias", grad_bias, width, x.dtype());
  if (grad_x_addend.defined()) {
    MMS_CHECK(grad_x.defined(), op, ": grad_x_addend is added to grad_x, which is not asked for");
    check_contiguous(op, "grad_x_addend", grad_x_addend);
    MMS_CHECK(grad_x_addend.shape() == x.shape() && grad_x_addend.dtype() == x.dtype(), op, ": grad_x_addend ",
              shape_str(grad_x_addend.shape()), " ", dtype_name(grad_x_addend.dtype()), " does not match input ",
              shape_str(x.shape()), " ", dtype_name(x.dtype()));
    MMS_CHECK(grad_x_addend.raw_data() != grad_x.raw_data(), op, ": grad_x_addend must not alias grad_x");
  }
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    layer_norm_backward_typed<T>(grad_y, x, weight, mean, rstd, grad_x_addend, grad_x, grad_weight, grad_bias,
                                 rows, width);
  });
}

}  // namespace mms::cpu
