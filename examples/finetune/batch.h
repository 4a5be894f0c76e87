// From a host ListBatch (data/batching.h) to the tensors the scorer and the objective
// take (pixels on the run's device, the rest on the host: see to_tensors); and the
// modality ablations.
#pragma once

#include <string>

#include "data/batching.h"
#include "tensor/tensor.h"

namespace mmsft {

struct BatchTensors {
  int64_t lists = 0, list_size = 0;  // B, K
  mms::Tensor pixels;            // [B, 3, S, S] float32, on the run's device
  mms::Tensor input_ids;         // [B*K, L] int64; this and the rest on the host
  mms::Tensor attention_mask;    // [B*K, L] int64
  mms::Tensor gold;              // [B, K] float32 mean ratings (0 at padding)
  mms::Tensor valid;             // [B, K] uint8
  mms::Tensor modality_targets;  // [B, K] int64, -100 at padding
};

BatchTensors to_tensors(const mms::data::ListBatch& batch, mms::Device device);

// --ablate: the model must not be able to use one modality, in training and evaluation.
//   "image": every pixel set to 0 after CLIP normalisation (a flat image of the mean
//            colour), so all images look the same;
//   "text":  every scenario (padding included) replaced by the empty text (BOS, EOS,
//            padding), so all texts look the same.
void apply_ablation(mms::data::ListBatch& batch, const std::string& ablate, const mms::data::TokenizedText& empty_text);

}  // namespace mmsft
