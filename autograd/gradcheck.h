// Finite-difference gradient checking in float64.
//
// gradcheck(f, inputs) compares the analytic gradient of sum(f(inputs) * w), for a
// fixed random weighting w (so every output element matters, not just their sum),
// with central differences (f(x + eps) - f(x - eps)) / 2 eps, element by element.
// Build non-contiguous or broadcast operands INSIDE f from the contiguous inputs, so
// that the views' own gradients are checked too.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace mms {

struct GradcheckResult {
  bool ok = true;
  double max_abs_error = 0.0;   // max |analytic - numeric|
  double max_rel_error = 0.0;   // max |analytic - numeric| / (atol + rtol |numeric|) -- <= 1 passes
  std::string message;          // names the input and element of the worst mismatch
};

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-6;
  double rtol = 1e-5;
  uint64_t seed = 1234;
};

using TensorFunction = std::function<Tensor(const std::vector<Tensor>&)>;

// inputs must be float64 CPU tensors; the ones that require grad are checked.
GradcheckResult gradcheck(const TensorFunction& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options = {});

}  // namespace mms
