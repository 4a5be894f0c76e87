// How many floating-point operations one fine-tuning step does, counted from the
// model's shapes: 2*M*N*K per GEMM (patch embedding, every Linear, the attention
// products QK^T and PV, the head), forward only, then x3 for forward + backward
// (the backward of a GEMM is two GEMMs of the same size). Elementwise work, norms,
// softmax and the optimizer are left out: they are memory-bound and would inflate
// the count without measuring the tensor cores. The same convention as PyTorch's
// flop counter and the "6 N" rule, so MFU figures compare across frameworks.
#pragma once

#include <cstdint>

#include "vlm/clip_config.h"

namespace mmsbench {

inline double transformer_forward_flops(double sequences, double tokens, double width, double mlp,
                                        double layers) {
  const double linear = 2.0 * sequences * tokens * (4.0 * width * width + 2.0 * width * mlp);
  const double attention = 2.0 * 2.0 * sequences * tokens * tokens * width;  // QK^T and PV
  return layers * (linear + attention);
}

// images: B lists (one image each); texts: B*K; head hidden size H.
inline double step_flops(const mms::vlm::CLIPConfig& c, int64_t lists, int64_t list_size, int64_t text_len,
                         int64_t head_hidden) {
  const double images = static_cast<double>(lists), texts = static_cast<double>(lists * list_size);
  const auto& v = c.vision;
  const auto& t = c.text;
  const double patches = static_cast<double>(v.grid() * v.grid());
  const double patch_dim = static_cast<double>(v.num_channels * v.patch_size * v.patch_size);
  double forward = 2.0 * images * patches * patch_dim * v.hidden_size;
  forward += transformer_forward_flops(images, patches + 1, v.hidden_size, v.intermediate_size, v.num_hidden_layers);
  forward += transformer_forward_flops(texts, text_len, t.hidden_size, t.intermediate_size, t.num_hidden_layers);
  forward += 2.0 * images * v.hidden_size * c.projection_dim + 2.0 * texts * t.hidden_size * c.projection_dim;
  forward += 2.0 * texts * (3.0 * c.projection_dim * head_hidden + head_hidden * 4.0);
  return 3.0 * forward;
}

}  // namespace mmsbench
