// Pairwise logistic loss (RankNet-style): the "binary preference" baseline of MM-SCALE.
//
// For every ordered pair (i, j) of valid items in the same list with y_i > y_j (i should
// rank above j):  l_ij = -log sigmoid(s_i - s_j) = softplus(s_j - s_i), computed as
// softplus(d) = max(d, 0) + log1p(exp(-|d|)) (stable for any finite d).
//   loss = sum over all such pairs in the batch / P      (P = their number, pooled)
//   d loss / d s_i += -sigmoid(s_j - s_i) / P,   d loss / d s_j += +sigmoid(s_j - s_i) / P
// Pairs with equal gold ratings carry no preference and are skipped, so a list with
// all-equal labels, one item or no valid items contributes 0 to the sum and nothing to
// P. With P = 0 the loss is 0 with a zero gradient (no division by zero). A NaN/inf
// score at a valid position raises an mms::Error naming "pairwise_logistic_loss".
#pragma once

#include "autograd/api.h"

namespace mms::losses {

// scores [B, K] float32/float64, any device (differentiable); gold [B, K] (no gradient);
// valid [B, K] Bool/UInt8 or undefined. Returns a scalar.
Tensor pairwise_logistic_loss(const Tensor& scores, const Tensor& gold, const Tensor& valid = Tensor());

}  // namespace mms::losses
