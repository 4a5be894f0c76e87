// What examples/embed computes, as a library call, so the parity tests run the exact
// code path users run.
//
// inputs:   pixel_values [N, C, H, W] (any floating dtype) and/or input_ids [M, L]
//           (int64 or int32) with optional attention_mask [M, L] (any integer / bool).
// The model's dtype and device decide where and how it runs (inputs are moved there).
// upstream: optional upstream_image_embeds [N, P] and/or upstream_text_embeds [M, P].
// Returns vision_last_hidden_state, vision_pooled, image_features, image_embeds,
// text_last_hidden_state, text_pooled, text_features, text_embeds, logits_per_image
// (when both sides are given) in `dtype`; with an upstream, also grad.<HF name> for
// every parameter of d/dθ [sum(image_embeds * U_i) + sum(text_embeds * U_t)] (zeros
// for parameters the loss does not reach, such as logit_scale).
#pragma once

#include <map>
#include <string>

#include "vlm/clip_model.h"

namespace mms::vlm {

std::map<std::string, Tensor> clip_embed(CLIPModel& model, const std::map<std::string, Tensor>& inputs,
                                         const std::map<std::string, Tensor>* upstream = nullptr);

}  // namespace mms::vlm
