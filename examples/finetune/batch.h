// From a host ListBatch (data/batching.h) to the tensors the scorer and the objective
// take (pixels on the run's device, the rest on the host: see to_tensors); the modality
// ablations; and --trim-text.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

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
//            padding), so all texts look the same. A batch already cut by --trim-text
//            takes the empty text's first L' tokens (its real ones always fit: L' >= 2
//            for any batch with a real text), so ablating before or after trimming
//            gives the model the same input up to trailing padding.
void apply_ablation(mms::data::ListBatch& batch, const std::string& ablate, const mms::data::TokenizedText& empty_text);

// What one batch goes through before to_tensors, in training and evaluation alike:
// the ablation (on the full-length texts), then, with --trim-text, the cut to the
// longest real text (so --ablate text trims every batch to the empty text's 2 tokens).
// Returns the trim (from_length == to_length when trimming is off).
mms::data::TextTrim prepare_batch(mms::data::ListBatch& batch, const std::string& ablate,
                                  const mms::data::TokenizedText& empty_text, bool trim_text);

// The text tokens --trim-text kept and dropped over many batches.
struct TrimTally {
  int64_t batches = 0;
  int64_t length_sum = 0;     // sum of L' over the batches
  int64_t context_length = 0; // L (the largest seen)
  int64_t tokens_before = 0, tokens_after = 0;
  void add(const mms::data::TextTrim& trim);
  double mean_length() const { return batches ? static_cast<double>(length_sum) / batches : 0.0; }
  double saved_fraction() const {
    return tokens_before ? 1.0 - static_cast<double>(tokens_after) / tokens_before : 0.0;
  }
  nlohmann::json to_json() const;
  // Back from to_json() (a checkpoint carries the tally across a resume).
  static TrimTally from_json(const nlohmann::json& j);
};

}  // namespace mmsft
