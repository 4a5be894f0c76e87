// The short path from a checkpoint to a score, for programs that embed the engine:
//
//   #include "vlm/scorer.h"
//   mms::vlm::Scorer scorer = mms::vlm::Scorer::load("runs/finetune/checkpoint.safetensors");
//   double s = scorer.score("photo.png", "A man hands a gift to a child.");   // in (1, 5)
//
// Scorer bundles what scoring needs and a caller should not have to assemble: the
// PairScorer (eval mode, no gradients), the CLIP tokenizer, the image preprocessing
// and the context length, all matched to the checkpoint. It is the one vlm/ file that
// uses data/ (images and the tokenizer): the top of the stack, for convenience.
//
// Checkpoints: a file written by save_pair_scorer, or examples/finetune's
// checkpoint.safetensors (its optimizer.* tensors are ignored).
//
// Tokenizer (when `vocab` is empty), the first that exists of:
//   1. __metadata__ "vocab" of the checkpoint (a path);
//   2. the training options in __metadata__ "options": their "vocab", else their
//      "model" directory when it holds vocab.json;
//   3. beside the checkpoint: metrics.json's "vocab", then a vocab/ folder;
//   4. finetune's synthetic default cache ($XDG_CACHE_HOME/mmscale or ~/.cache/mmscale,
//      synthetic-v1-seed0-n<synthetic_images>/vocab) when the run used no --data.
// Otherwise load() fails naming what it tried; pass the vocabulary explicitly.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/clip_preprocess.h"
#include "data/tokenizer.h"
#include "vlm/pair_scorer.h"

namespace mms::vlm {

struct ScorerOptions {
  std::string device = "cpu";     // cpu, cuda or cuda:N
  DType dtype = DType::Float32;   // Float64 on CPU for reference-grade numbers
  int64_t batch_size = 64;        // pairs per forward pass in score_batch
};

struct PairScore {
  double score = 0.0;                        // 1 + 4 * sigmoid(logit), in (1, 5)
  std::array<double, 3> modality_probs{};    // softmax over (text, image, both)
  Modality predicted_modality = Modality::Both;
};

struct ScorerInput {
  std::string image_path;
  std::string text;
};

class Scorer {
 public:
  // `vocab`: a vocab.json+merges.txt directory, a vocab.json, or OpenAI's .gz; empty =
  // found from the checkpoint (see the top of this file).
  static Scorer load(const std::string& checkpoint, const std::string& vocab = "",
                     const ScorerOptions& options = {});
  // From parts already in memory (tests, or a model trained in the same process).
  Scorer(std::shared_ptr<PairScorer> model, data::ClipTokenizer tokenizer, data::ClipImageConfig image_config,
         const ScorerOptions& options = {});

  double score(const std::string& image_path, const std::string& text) const;
  PairScore score_pair(const std::string& image_path, const std::string& text) const;
  // Any number of pairs, in order; each distinct image is decoded and encoded once per
  // batch of options.batch_size pairs.
  std::vector<PairScore> score_batch(const std::vector<ScorerInput>& pairs) const;
  // The same on preprocessed images ([3, S, S] CHW floats, see data/clip_preprocess.h):
  // pair i is (images[image_of_pair[i]], texts[i]).
  std::vector<PairScore> score_preprocessed(const std::vector<std::vector<float>>& images,
                                            const std::vector<int64_t>& image_of_pair,
                                            const std::vector<std::string>& texts) const;

  PairScorer& model() const { return *model_; }
  const data::ClipTokenizer& tokenizer() const { return *tokenizer_; }
  const data::ClipImageConfig& image_config() const { return image_config_; }
  int64_t context_length() const { return model_->config.text.max_position_embeddings; }
  // Where the tokenizer came from (a path), for logs.
  const std::string& vocab_source() const { return vocab_source_; }

 private:
  std::shared_ptr<PairScorer> model_;
  std::shared_ptr<const data::ClipTokenizer> tokenizer_;
  data::ClipImageConfig image_config_;
  ScorerOptions options_;
  std::string vocab_source_;
};

// Step 1-4 above on a checkpoint's metadata; empty when nothing was found, with the
// places tried appended to *tried.
std::string find_checkpoint_vocab(const std::string& checkpoint, const std::map<std::string, std::string>& metadata,
                                  std::vector<std::string>* tried = nullptr);

const char* modality_label(Modality m);  // "text" | "image" | "both", as predictions files write it

}  // namespace mms::vlm
