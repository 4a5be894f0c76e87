// The MM-SCALE pair scorer: CLIP plus a small head that rates one (image, scenario)
// pair.
//
//   i = normalize(image features), t = normalize(text features)       [B, P] each
//   z = GELU(fusion(concat(i, t, i * t)))                              [B, H]
//   score = 1 + 4 * sigmoid(score_head(z))            in (1, 5)        [B]
//   modality_logits = modality_head(z)  (text / image / both)          [B, 3]
//
// Batches are lists grouped by image: N images, each with K scenarios, text rows in
// image-major order (image n's scenarios at rows n*K .. n*K+K-1). The image tower runs
// once per image; its embedding is repeated K times (repeat_interleave), so its
// gradient sums over the image's scenarios.
//
// One safetensors file holds everything: the CLIP part under its Hugging Face names,
// the head under head.* (head.fusion.{weight,bias}, head.score.{weight,bias},
// head.modality.{weight,bias}); __metadata__ carries the CLIP config.json and the head
// sizes so the file alone rebuilds the model.
#pragma once

#include <memory>
#include <string>

#include "data/mmscale_dataset.h"
#include "nn/layers.h"
#include "tensor/safetensors.h"
#include "vlm/clip_model.h"

namespace mms::vlm {

struct PairHeadConfig {
  int64_t hidden_size = 512;  // H
  double dropout = 0.1;       // after the GELU, training mode only
};

// The modality labels are the dataset's (text / image / both, in that order): the
// modality head's logit i scores data::Modality(i).
using Modality = data::Modality;
constexpr int64_t kNumModalities = data::kNumModalities;

class PairHead : public nn::Module {
 public:
  PairHead(int64_t projection_dim, const PairHeadConfig& config, uint64_t seed = 0);

  struct Output {
    Tensor score;            // [B] in (1, 5)
    Tensor score_logit;      // [B], the pre-sigmoid value (for losses on logits)
    Tensor modality_logits;  // [B, 3]
  };
  // image_embeds and text_embeds [B, P], already normalised and paired row by row.
  Output forward(const Tensor& image_embeds, const Tensor& text_embeds) const;

  PairHeadConfig config;
  std::shared_ptr<nn::Linear> fusion;    // [H, 3P]
  std::shared_ptr<nn::Dropout> dropout;
  std::shared_ptr<nn::Linear> score;     // [1, H]
  std::shared_ptr<nn::Linear> modality;  // [3, H]
};

// A CLIPModel (its parameters keep their HF names at the top level) with the head as
// child "head".
class PairScorer : public CLIPModel {
 public:
  // The head is always drawn from `seed`; the CLIP part too when random_clip, else it
  // keeps the layers' default init (for weights about to be loaded: see CLIPModel).
  PairScorer(const CLIPConfig& clip_config, const PairHeadConfig& head_config, uint64_t seed = 0,
             bool random_clip = true);

  struct Output {
    Tensor score, score_logit, modality_logits;  // [N*K], [N*K], [N*K, 3]
    Tensor image_embeds;                         // [N, P] (one per image)
    Tensor text_embeds;                          // [N*K, P]
  };
  // pixel_values [N, C, H, W]; input_ids / attention_mask [N*K, L].
  Output forward(const Tensor& pixel_values, const Tensor& input_ids, const Tensor& attention_mask,
                 int64_t scenarios_per_image) const;

  std::shared_ptr<PairHead> head;
};

// Writes the whole scorer (atomically) with its configuration in the metadata.
void save_pair_scorer(const PairScorer& model, const std::string& path);
// Rebuilds a scorer from a file written by save_pair_scorer, in `dtype`.
std::shared_ptr<PairScorer> load_pair_scorer(const std::string& path, DType dtype = DType::Float32);
// The same from a file already read: for files that carry more than the scorer (a
// training checkpoint's optimizer.* tensors), which the caller removes first. `source`
// names the file in errors.
std::shared_ptr<PairScorer> pair_scorer_from_contents(const SafetensorsContents& contents, const std::string& source,
                                                      DType dtype = DType::Float32);
// A scorer whose CLIP part comes from a Hugging Face checkpoint directory and whose
// head is freshly initialised from `seed`.
std::shared_ptr<PairScorer> pair_scorer_from_clip(const std::string& clip_dir, const PairHeadConfig& head_config,
                                                  uint64_t seed, DType dtype = DType::Float32);

}  // namespace mms::vlm
