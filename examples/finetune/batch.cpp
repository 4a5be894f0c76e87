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
    MMS_CHECK(empty.input_ids.size() == L, "ablate text: the empty text has ", empty.input_ids.size(),
              " tokens, the batch ", L);
    for (size_t row = 0; row * L < b.input_ids.size(); ++row) {
      std::copy(empty.input_ids.begin(), empty.input_ids.end(), b.input_ids.begin() + row * L);
      std::copy(empty.attention_mask.begin(), empty.attention_mask.end(), b.attention_mask.begin() + row * L);
    }
  } else {
    mms::fail("--ablate: unknown modality '", ablate, "' (image or text)");
  }
}

}  // namespace mmsft
