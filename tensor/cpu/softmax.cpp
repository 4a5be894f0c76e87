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
#define EIGEN_DONT_PARALLELIZE  // as every file that includes Eigen (tensor/cpu/gemm_eigen.inl)
#include <Eigen/Core>
#include <cmath>

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
    const T inv = static_cast<T>(1.0 / total);
    for (int64_t j = 0; j < n; ++j) y[j] *= inv;
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
#pragma omp parallel for schedule(static) if (parallel_worth_it(r.rows, r.rows * r.width))
    for (int64_t m = 0; m < r.rows; ++m) softmax_row(in + m * r.width, res + m * r.width, r.width, log);
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
#pragma omp parallel for schedule(static) if (parallel_worth_it(r.rows, r.rows * r.width))
    for (int64_t m = 0; m < r.rows; ++m) {
      const int64_t at = m * r.width;
      softmax_backward_row(g + at, py + at, gi + at, r.width, log);
    }
  });
}

}  // namespace mms::cpu
