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
//             total_steps        the run's length (a fresh run refuses to overwrite
//                                an unfinished one)
//             inputs             fingerprints of the training split and the tokenizer
//                                (RunData), which a resume must find unchanged
//             optimizer_params   how many parameters have AdamW state (a resume
//                                refuses a checkpoint that lost some)
//             text_trim          --trim-text's tally of the training batches so far
//   (the last four were added later: a checkpoint without them skips their checks)
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
#include "tensor/safetensors.h"
#include "vlm/pair_scorer.h"

namespace mmsft {

inline constexpr const char* kOptimizerPrefix = "optimizer.";

struct TrainingState {
  int64_t step = 0;
  int64_t total_steps = 0;  // 0: not recorded (an older checkpoint)
  uint64_t rng_seed = 0, rng_offset = 0;
  nlohmann::json options, trajectory;
  nlohmann::json inputs;      // {"train": ..., "tokenizer": ...}; null when not recorded
  nlohmann::json text_trim;   // TrimTally::to_json(); null when not recorded
  std::string vocab;  // the tokenizer the run used (a path), for scoring tools
  std::vector<LogRow> log;
};

// The file read but not yet applied, so a resume can compare its settings before the
// tensors (whose shape errors would hide a plain "other --width").
struct CheckpointFile {
  std::string path;
  TrainingState state;
  mms::SafetensorsContents contents;
  int64_t optimizer_params = -1;  // -1: not recorded
};

void save_checkpoint(const std::string& path, const mms::vlm::PairScorer& model, const mms::nn::AdamW& optimizer,
                     const TrainingState& state);

// Reads the file and its metadata; errors name the file.
CheckpointFile read_checkpoint(const std::string& path);
// Loads the tensors into an existing model and optimizer (strict: every name must
// match; every parameter that had AdamW state has it again, with a step count no
// larger than the checkpoint's). Errors name the file.
void apply_checkpoint(const CheckpointFile& file, mms::vlm::PairScorer& model, mms::nn::AdamW& optimizer);

// A fresh run (no --resume) calls this before it starts: throws when the checkpoint at
// `path` belongs to a run that has not finished, rather than overwriting it at the first
// save. A finished run's checkpoint (or an older one without total_steps) may be replaced.
void refuse_to_overwrite_an_unfinished_run(const std::string& path);

// The scorer alone, rebuilt from the checkpoint's metadata (optimizer.* ignored).
std::shared_ptr<mms::vlm::PairScorer> load_scorer_from_checkpoint(const std::string& path);

nlohmann::json log_rows_to_json(const std::vector<LogRow>& rows);
std::vector<LogRow> log_rows_from_json(const nlohmann::json& j);

}  // namespace mmsft
