// The training checkpoint: ONE safetensors file, OUT/checkpoint.safetensors, so a
// single atomic rename commits everything (model, optimizer, progress) together.
//
//   tensors   the scorer under its Hugging Face names + head.* (exactly what
//             vlm::save_pair_scorer writes), and the AdamW state under
//             "optimizer.exp_avg.<param>", "optimizer.exp_avg_sq.<param>",
//             "optimizer.step.<param>" (int64 []), for the trainable parameters.
//   metadata  the keys of save_pair_scorer (format, mmscale, clip_config,
//             head_hidden_size, head_dropout), plus
//             finetune_step      optimizer steps done
//             rng_seed/offset    the default generator (dropout masks) as decimals
//             options            the run's settings (Options::to_json)
//             trajectory         the settings a resume must match
//             vocab              the tokenizer's path (vlm/scorer.h finds it here)
//             train_log          the log rows so far (JSON), so train_log.csv and
//                                curves.svg continue across a resume
//
// Writing goes through save_safetensors: temporary file in the same folder, fsync,
// rename, fsync of the folder; a failed write throws and leaves the previous file.
// load_scorer_from_checkpoint() reads the model part alone (for scoring tools).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nn/optim.h"
#include "report.h"
#include "vlm/pair_scorer.h"

namespace mmsft {

inline constexpr const char* kOptimizerPrefix = "optimizer.";

struct TrainingState {
  int64_t step = 0;
  uint64_t rng_seed = 0, rng_offset = 0;
  nlohmann::json options, trajectory;
  std::string vocab;  // the tokenizer the run used (a path), for scoring tools
  std::vector<LogRow> log;
};

void save_checkpoint(const std::string& path, const mms::vlm::PairScorer& model, const mms::nn::AdamW& optimizer,
                     const TrainingState& state);

// Loads the checkpoint into an existing model and optimizer (strict: every name must
// match) and returns the training state. Errors name the file.
TrainingState load_checkpoint(const std::string& path, mms::vlm::PairScorer& model, mms::nn::AdamW& optimizer);

// The scorer alone, rebuilt from the checkpoint's metadata (optimizer.* ignored).
std::shared_ptr<mms::vlm::PairScorer> load_scorer_from_checkpoint(const std::string& path);

nlohmann::json log_rows_to_json(const std::vector<LogRow>& rows);
std::vector<LogRow> log_rows_from_json(const nlohmann::json& j);

}  // namespace mmsft
