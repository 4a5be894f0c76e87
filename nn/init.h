// Parameter initialisation, drawn from the Philox stream through a Generator so that a
// seed (manual_seed, or an explicit Generator) gives the same weights on any device.
//
// Defaults follow CLIP-style transformers: weights ~ N(0, 0.02), biases 0, LayerNorm
// weight 1 and bias 0. (Hugging Face's CLIPPreTrainedModel rescales some stds by
// depth; pretrained runs load weights anyway, so the plain 0.02 is used here.)
#pragma once

#include "tensor/tensor.h"

namespace mms::nn {

constexpr double kDefaultInitStd = 0.02;

// N(0, std) of `shape`, float32 on the host, reserving numel values of `generator`.
Tensor init_normal(const Shape& shape, double stddev, Generator& generator = default_generator());

}  // namespace mms::nn
