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

#include <algorithm>
#include <vector>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/parallel.h"

namespace mms::cpu {

namespace {

template <typename T>
void adamw_one(T* p, const T* g, T* m, T* v, int64_t n, T lr, T b1, T b2, T eps, T wd,
               T inv_bc1, T inv_sqrt_bc2) {
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

void CpuBackend::adamw_device_scalars(const std::vector<AdamWTensor>& tensors, const Tensor& lr, double lr_scale,
                                      double beta1, double beta2, double eps, const Tensor& step) {
  // On the CPU the "device" scalars are host memory: read them and run the plain update.
  MMS_CHECK(lr.device().is_cpu() && step.device().is_cpu() && lr.numel() == 1 && step.numel() == 1 &&
                step.dtype() == DType::Int64,
            "adamw: lr and step must be CPU scalars (step int64), got ", lr.device().str(), " ",
            shape_str(lr.shape()), " and ", step.device().str(), " ", dtype_name(step.dtype()));
  adamw(tensors, lr.item() * lr_scale, beta1, beta2, eps, static_cast<int64_t>(step.item()));
}

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
  // One parallel job over all tensors end to end (a model has ~100 parameter tensors,
  // most of them small: one region each cost more than the update), cut into equal
  // element ranges; each part updates the pieces of the tensors its range covers.
  std::vector<int64_t> starts(tensors.size() + 1, 0);
  for (size_t i = 0; i < tensors.size(); ++i) starts[i + 1] = starts[i] + tensors[i].param.numel();
  const int64_t total = starts.back();
  auto update = [&](int64_t begin, int64_t end) {
    for (size_t i = 0; i < tensors.size(); ++i) {
      const int64_t lo = std::max(begin, starts[i]), hi = std::min(end, starts[i + 1]);
      if (lo >= hi) continue;
      const AdamWTensor& t = tensors[i];
      const int64_t skip = lo - starts[i];
      dispatch_floating(t.param.dtype(), op, [&](auto tag) {
        using T = typename decltype(tag)::type;
        adamw_one<T>(t.param.data<T>() + skip, t.grad.data<T>() + skip, t.exp_avg.data<T>() + skip,
                     t.exp_avg_sq.data<T>() + skip, hi - lo, static_cast<T>(lr), static_cast<T>(beta1),
                     static_cast<T>(beta2), static_cast<T>(eps), static_cast<T>(t.weight_decay),
                     static_cast<T>(1.0 / bc1), static_cast<T>(1.0 / std::sqrt(bc2)));
      });
    }
  };
  // dtype checks (dispatch_floating throws) happen before any thread starts
  for (const AdamWTensor& t : tensors) dispatch_floating(t.param.dtype(), op, [](auto) {});
  if (parallel_worth_it(2, total * 4)) {
    parallel_ranges(total, parallel_threads(), update);
  } else {
    update(0, total);
  }
}

void CpuBackend::sum_of_squares_into(const std::vector<Tensor>& tensors, Tensor& out) {
  MMS_CHECK(out.device().is_cpu() && out.dtype() == DType::Float64 && out.numel() == 1,
            "sum_of_squares: out must be a float64 scalar on the CPU, got ", dtype_name(out.dtype()), " ",
            shape_str(out.shape()), " on ", out.device().str());
  // As adamw: one job over all tensors end to end, one double partial per part, the
  // partials added in part order (the same sum for the same thread count).
  std::vector<int64_t> starts(tensors.size() + 1, 0);
  for (size_t i = 0; i < tensors.size(); ++i) {
    check_contiguous("sum_of_squares", "tensor", tensors[i]);
    dispatch_floating(tensors[i].dtype(), "sum_of_squares", [](auto) {});
    starts[i + 1] = starts[i] + tensors[i].numel();
  }
  const int64_t total = starts.back();
  auto squares = [&](int64_t begin, int64_t end) {
    double sum = 0.0;
    for (size_t i = 0; i < tensors.size(); ++i) {
      const int64_t lo = std::max(begin, starts[i]), hi = std::min(end, starts[i + 1]);
      if (lo >= hi) continue;
      dispatch_floating(tensors[i].dtype(), "sum_of_squares", [&](auto tag) {
        using T = typename decltype(tag)::type;
        const T* x = tensors[i].data<T>() + (lo - starts[i]);
        double part = 0.0;
#pragma omp simd reduction(+ : part)
        for (int64_t j = 0; j < hi - lo; ++j) part += static_cast<double>(x[j]) * x[j];
        sum += part;
      });
    }
    return sum;
  };
  if (!parallel_worth_it(2, total)) {
    out.data<double>()[0] = squares(0, total);
    return;
  }
  const int64_t parts = parallel_threads();
  std::vector<double> partial(parts, 0.0);
  parallel_parts(parts, [&](int64_t t) { partial[t] = squares(total * t / parts, total * (t + 1) / parts); });
  double sum = 0.0;
  for (double p : partial) sum += p;
  out.data<double>()[0] = sum;
}

}  // namespace mms::cpu
