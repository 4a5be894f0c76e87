// What a run is built from: the three splits, the tokenizer, the image preprocessing
// and the model. With no --data/--model this is the built-in default: the synthetic
// MM-SCALE stand-in generated once into a cache folder (with a BPE vocabulary trained
// on its training texts), and a small random CLIP.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "data/clip_preprocess.h"
#include "data/mmscale_dataset.h"
#include "data/tokenizer.h"
#include "options.h"
#include "vlm/pair_scorer.h"

namespace mmsft {

using Logger = std::function<void(const std::string&)>;

struct RunData {
  std::string root;          // dataset root
  bool synthetic = false;    // the built-in stand-in
  std::string vocab_source;  // where the tokenizer came from (for the log)
  // What --resume checks is unchanged (Trainer::resume): the training split's images,
  // scenarios, texts, ratings and modalities, and the tokenizer's tokens and merges.
  std::string train_fingerprint, tokenizer_fingerprint;
  // Both, as the checkpoint and metrics.json record them: {"train": ..., "tokenizer": ...}.
  nlohmann::json inputs_json() const {
    return {{"train", train_fingerprint}, {"tokenizer", tokenizer_fingerprint}};
  }
  mms::data::Dataset train, val, test;
  std::shared_ptr<mms::data::ClipTokenizer> tokenizer;
  mms::data::ClipImageConfig image;
  int64_t context_length = 77;
};

// The cache folder: --cache-dir, else ${XDG_CACHE_HOME:-$HOME/.cache}/mmscale.
std::string default_cache_dir(const Options& options);

// The synthetic stand-in in CACHE/synthetic-v1-seed0-n<images>: generated (with
// vocab/ trained on its training texts) in a temporary folder that is renamed into
// place once complete, the marker file COMPLETE written last; reused when present.
// Returns the dataset root.
std::string ensure_synthetic_dataset(const std::string& cache_dir, int64_t num_images, const Logger& log);

// Resolves the inputs (see Options) and loads everything but the model. Errors of the
// data, tokenizer and safetensors layers reach the caller unchanged.
RunData load_run_data(const Options& options, const Logger& log);

// A fresh scorer: the --model checkpoint with a new head, or the built-in small CLIP
// sized by the options, both seeded by options.seed, float32, on options.device.
std::shared_ptr<mms::vlm::PairScorer> build_model(const Options& options, const RunData& data);

// The CLIP config of the built-in small model for a given tokenizer.
mms::vlm::CLIPConfig small_clip_config(const Options& options, const mms::data::ClipTokenizer& tokenizer);

}  // namespace mmsft
