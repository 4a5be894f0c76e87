// Binary cross-entropy with logits: the "binary supervision" baseline of MM-SCALE,
// where the label is 1 when the mean gold rating is >= 2.5 (acceptable).
//
//   l_i = max(x_i, 0) - x_i t_i + log1p(exp(-|x_i|))      (= -[t log s + (1-t) log(1-s)],
//                                                            s = sigmoid(x), never overflows)
//   loss = sum_i v_i l_i / n,  n = sum_i v_i;   d loss / d x_i = v_i (sigmoid(x_i) - t_i) / n
// With no valid item the loss is 0 with a zero gradient. A NaN/inf logit or target at a
// valid position raises an mms::Error naming "bce_with_logits_loss".
#pragma once

#include "autograd/api.h"

namespace mms::losses {

// logits float32/float64, any shape and device (differentiable); targets in [0, 1] of
// the same shape (cast to the logits' dtype, no gradient); valid Bool/UInt8 or undefined.
Tensor bce_with_logits_loss(const Tensor& logits, const Tensor& targets, const Tensor& valid = Tensor());

// 1 where mean_rating >= 2.5 (acceptable), else 0; same dtype, shape and device.
Tensor acceptability_targets(const Tensor& mean_rating);

}  // namespace mms::losses
