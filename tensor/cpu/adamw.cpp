// AdamW over many tensors in one call, and the global sum of squares for gradient
// clipping.
//
// Per element (decoupled weight decay, Loshchilov & Hutter; bias-corrected moments):
//   m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
//   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) + lr * wd * p
// which equals PyTorch's order (p *= 1 - lr wd, then the Adam step) because the Adam
// step does not depend on p. The bias corrections are computed once per call in double;
// the per-element math runs in the tensors' dtype, as PyTorch's float32 AdamW does.
#include <cmath>

#include "tensor/cpu/cpu_backend.h"

namespace mms::cpu {

namespace {

template <typename T>
void adamw_one(T* p, const T* g, T* m, T* v, int64_t n, T lr, T b1, T b2, T eps, T wd,
               T inv_bc1, T inv_sqrt_bc2) {
#pragma omp parallel for schedule(static) if (parallel_worth_it(n, n * 4))
  for (int64_t i = 0; i < n; ++i) {
    const T grad = g[i];
    const T mi = b1 * m[i] + (T(1) - b1) * grad;
    const T vi = b2 * v[i] + (T(1) - b2) * grad * grad;
    m[i] = mi;
    v[i] = vi;
    // sqrt(v / bc2) = sqrt(v) / sqrt(bc2)
    const T denom = std::sqrt(vi) * inv_sqrt_bc2 + eps;
    p[i] -= lr * (mi * inv_bc1) / denom + lr * wd * p[i];
  }
}

}  // namespace

void CpuBackend::adamw(const std::vector<AdamWTensor>& tensors, double lr, double beta1,
                       double beta2, double eps, int64_t step) {
  const char* op = "adamw";
  MMS_CHECK(step >= 1, op, ": step must be >= 1 (bias correction), got ", step);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const AdamWTensor& t = tensors[i];
    const Tensor* parts[] = {&t.param, &t.grad, &t.exp_avg, &t.exp_avg_sq};
    const char* names[] = {"param", "grad", "exp_avg", "exp_avg_sq"};
    for (int j = 0; j < 4; ++j) {
      MMS_CHECK(parts[j]->defined(), op, ": tensor ", i, " has no ", names[j]);
      check_contiguous(op, names[j], *parts[j]);
      MMS_CHECK(parts[j]->shape() == t.param.shape() && parts[j]->dtype() == t.param.dtype(), op,
                ": tensor ", i, " ", names[j], " ", shape_str(parts[j]->shape()), " ",
                dtype_name(parts[j]->dtype()), " does not match param ",
                shape_str(t.param.shape()), " ", dtype_name(t.param.dtype()));
    }
  }
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  for (const AdamWTensor& t : tensors) {
    dispatch_floating(t.param.dtype(), op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      adamw_one<T>(t.param.data<T>(), t.grad.data<T>(), t.exp_avg.data<T>(),
                   t.exp_avg_sq.data<T>(), t.param.numel(), static_cast<T>(lr),
                   static_cast<T>(beta1), static_cast<T>(beta2), static_cast<T>(eps),
                   static_cast<T>(t.weight_decay), static_cast<T>(1.0 / bc1),
                   static_cast<T>(1.0 / std::sqrt(bc2)));
    });
  }
}

double CpuBackend::sum_of_squares(const std::vector<Tensor>& tensors) {
  double total = 0.0;
  for (const Tensor& t : tensors) {
    check_contiguous("sum_of_squares", "tensor", t);
    dispatch_floating(t.dtype(), "sum_of_squares", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* x = t.data<T>();
      const int64_t n = t.numel();
      double part = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : part) if (parallel_worth_it(n, n))
      for (int64_t i = 0; i < n; ++i) part += static_cast<double>(x[i]) * x[i];
      total += part;
    });
  }
  return total;
}

}  // namespace mms::cpu
