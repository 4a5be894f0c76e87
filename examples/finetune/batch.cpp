#include "batch.h"

#include <algorithm>

#include "losses/cross_entropy.h"
#include "tensor/error.h"

namespace mmsft {

using mms::DType;
using mms::Tensor;

BatchTensors to_tensors(const mms::data::ListBatch& b, mms::Device device) {
  const int64_t B = b.batch_lists, K = b.list_size, S = b.image_size, L = b.context_length;
  BatchTensors t;
  t.lists = B;
  t.list_size = K;
  // Only the pixels go to the device here. The text tower and the losses read ids,
  // mask and labels on the host anyway and upload what the GPU needs without waiting
  // (vlm/clip_model.h, losses/objective.h); device copies would cost a wait to read back.
  t.pixels = mms::from_vector(b.pixels, {B, 3, S, S}).to(device);
  std::vector<int64_t> ids(b.input_ids.begin(), b.input_ids.end());
  std::vector<int64_t> mask(b.attention_mask.begin(), b.attention_mask.end());
  t.input_ids = mms::from_vector(ids, {B * K, L});
  t.attention_mask = mms::from_vector(mask, {B * K, L});
  t.gold = mms::from_vector(b.ratings, {B, K});
  t.valid = mms::from_vector(b.valid, {B, K});
  std::vector<int64_t> targets(static_cast<size_t>(B * K));
  for (size_t i = 0; i < targets.size(); ++i)
    targets[i] = b.valid[i] ? static_cast<int64_t>(b.modality[i]) : mms::losses::kIgnoreIndex;
  t.modality_targets = mms::from_vector(targets, {B, K});
  return t;
}

void apply_ablation(mms::data::ListBatch& b, const std::string& ablate, const mms::data::TokenizedText& empty) {
  if (ablate.empty()) return;
  if (ablate == "image") {
    std::fill(b.pixels.begin(), b.pixels.end(), 0.0f);
  } else if (ablate == "text") {
    const size_t L = static_cast<size_t>(b.context_length);
    MMS_CHECK(empty.input_ids.size() >= L && empty.attention_mask.size() == empty.input_ids.size(),
              "ablate text: the empty text has ", empty.input_ids.size(), " tokens, the batch ", L);
    // A trimmed batch (L shorter than the empty text): only padding may be cut.
    MMS_CHECK(std::all_of(empty.attention_mask.begin() + L, empty.attention_mask.end(), [](int32_t m) { return m == 0; }),
              "ablate text: the batch's ", L, " tokens cannot hold the empty text's real tokens");
    for (size_t row = 0; row * L < b.input_ids.size(); ++row) {
      std::copy(empty.input_ids.begin(), empty.input_ids.begin() + L, b.input_ids.begin() + row * L);
      std::copy(empty.attention_mask.begin(), empty.attention_mask.begin() + L, b.attention_mask.begin() + row * L);
    }
  } else {
    mms::fail("--ablate: unknown modality '", ablate, "' (image or text)");
  }
}

mms::data::TextTrim prepare_batch(mms::data::ListBatch& b, const std::string& ablate,
                                  const mms::data::TokenizedText& empty, bool trim_text) {
  apply_ablation(b, ablate, empty);
  if (trim_text) return mms::data::trim_text_to_longest(b);
  mms::data::TextTrim none;
  none.rows = b.batch_lists * b.list_size;
  none.from_length = none.to_length = b.context_length;
  return none;
}

void TrimTally::add(const mms::data::TextTrim& t) {
  ++batches;
  length_sum += t.to_length;
  context_length = std::max(context_length, t.from_length);
  tokens_before += t.tokens_before();
  tokens_after += t.tokens_after();
}

nlohmann::json TrimTally::to_json() const {
  return {{"batches", batches},
          {"length_sum", length_sum},
          {"context_length", context_length},
          {"mean_trimmed_length", mean_length()},
          {"text_tokens", tokens_before},
          {"text_tokens_kept", tokens_after},
          {"saved_fraction", saved_fraction()}};
}

TrimTally TrimTally::from_json(const nlohmann::json& j) {
  TrimTally t;
  t.batches = j.at("batches").get<int64_t>();
  t.length_sum = j.at("length_sum").get<int64_t>();
  t.context_length = j.at("context_length").get<int64_t>();
  t.tokens_before = j.at("text_tokens").get<int64_t>();
  t.tokens_after = j.at("text_tokens_kept").get<int64_t>();
  return t;
}

}  // namespace mmsft
