// Cross-entropy on class logits (the 3-way modality head of MM-SCALE: text-only,
// image-only, both), with an ignore index for items whose modality label is missing.
//
//   loss = -(1/n) sum_{i kept} log softmax(z_i)[t_i],   n = number of kept rows
//   d loss / d z_i = (softmax(z_i) - onehot(t_i)) / n   for kept rows, 0 for ignored rows
// Mean over the non-ignored rows; with none the loss is 0 with a zero gradient. Logits
// of ignored rows may hold anything. A NaN/inf logit in a kept row raises an mms::Error
// naming "cross_entropy_loss"; a target outside [0, C) that is not ignore_index too.
#pragma once

#include <cstdint>

#include "autograd/api.h"

namespace mms::losses {

inline constexpr int64_t kIgnoreIndex = -100;

// logits [..., C] float32/float64 on any device (differentiable); targets Int64 [...]
// (the logits' shape without the last dim), any device. Returns a scalar.
Tensor cross_entropy_loss(const Tensor& logits, const Tensor& targets,
                          int64_t ignore_index = kIgnoreIndex);

}  // namespace mms::losses
