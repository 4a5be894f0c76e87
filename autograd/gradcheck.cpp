#include "autograd/gradcheck.h"

#include <cmath>

#include "autograd/api.h"

namespace mms {

namespace {
double weighted_sum(const Tensor& out, const Tensor& weights) {
  NoGradGuard no_grad;
  return ops::sum(ops::mul(out.to(DType::Float64), weights)).item();
}
}  // namespace

GradcheckResult gradcheck(const TensorFunction& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options) {
  for (const Tensor& t : inputs)
    MMS_CHECK(t.dtype() == DType::Float64 && t.device().is_cpu() && t.is_contiguous(),
              "gradcheck: inputs must be contiguous float64 CPU tensors, got ", dtype_name(t.dtype()),
              " ", shape_str(t.shape()), " on ", t.device().str());
  GradcheckResult result;

  // Analytic: backward of sum(f(x) * w).
  for (Tensor t : inputs)  // handles share the impl, so clearing the copy clears the input
    if (t.requires_grad()) t.zero_grad();
  Tensor out = f(inputs);
  // Weights in [0.5, 1.5): nonzero, and different per element.
  Tensor weights = ops::add_scalar(rand(out.shape(), options.seed, 0, DType::Float64), 0.5);
  MMS_CHECK(out.requires_grad(), "gradcheck: the function's output does not require grad");
  out.backward(ops::cast(weights, out.dtype()));

  for (size_t input_index = 0; input_index < inputs.size(); ++input_index) {
    const Tensor& input = inputs[input_index];
    if (!input.requires_grad()) continue;
    Tensor analytic = input.grad();
    std::vector<double> analytic_values =
        analytic.defined() ? analytic.to_vector<double>() : std::vector<double>(input.numel(), 0.0);
    double* data = input.data<double>();
    for (int64_t i = 0; i < input.numel(); ++i) {
      const double original = data[i];
      data[i] = original + options.eps;
      const double plus = weighted_sum(f(inputs), weights);
      data[i] = original - options.eps;
      const double minus = weighted_sum(f(inputs), weights);
      data[i] = original;
      const double numeric = (plus - minus) / (2.0 * options.eps);
      const double error = std::abs(analytic_values[i] - numeric);
      const double scaled = error / (options.atol + options.rtol * std::abs(numeric));
      if (std::isnan(analytic_values[i]) || std::isnan(numeric)) {
        result.ok = false;
        result.message = concat("input ", input_index, " element ", i, ": NaN (analytic ",
                                analytic_values[i], ", numeric ", numeric, ")");
        return result;
      }
      result.max_abs_error = std::max(result.max_abs_error, error);
      if (scaled > result.max_rel_error) {
        result.max_rel_error = scaled;
        if (scaled > 1.0) {
          result.ok = false;
          result.message = concat("input ", input_index, " ", shape_str(input.shape()), " element ", i,
                                  ": analytic ", analytic_values[i], " vs numeric ", numeric);
        }
      }
    }
  }
  return result;
}

}  // namespace mms
