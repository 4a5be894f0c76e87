// Mean squared error on the 1-5 acceptability score (the regression term of the
// MM-SCALE objective, and the "regression alone" baseline).
//
//   loss = sum_i v_i (p_i - t_i)^2 / n,   n = sum_i v_i   (v = the validity mask)
//   d loss / d p_i = 2 v_i (p_i - t_i) / n
// With no valid item the loss is 0 with a zero gradient. Masked positions may hold
// anything (they never reach the arithmetic); a NaN/inf prediction or target at a valid
// position raises an mms::Error naming "mse_loss" (losses/loss_utils.h).
#pragma once

#include "autograd/api.h"

namespace mms::losses {

// pred: float32/float64, any shape, any device (differentiable). target: same shape
// (cast to pred's dtype; carries no gradient). valid: Bool/UInt8 of the same shape or
// undefined (all valid). Returns a scalar.
Tensor mse_loss(const Tensor& pred, const Tensor& target, const Tensor& valid = Tensor());

}  // namespace mms::losses
