// The finetune program's settings: one struct that the command line fills, that a run
// is built from, and that is written into metrics.json and the checkpoint (so a resumed
// run can check it continues the same trajectory).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "losses/objective.h"

namespace mmsft {

struct Options {
  // ---- inputs (empty = the built-in synthetic default) -----------------------------
  std::string data;       // MM-SCALE release root (--data, else $MMSCALE_DATA_ROOT)
  std::string model;      // Hugging Face CLIP directory (config.json + safetensors)
  std::string vocab;      // vocab.json+merges.txt directory, vocab.json, or OpenAI .gz
  std::string cache_dir;  // where the synthetic data and its vocabulary are cached
  bool check_images = false;  // decode every image of the three splits before training

  // ---- objective ---------------------------------------------------------------------
  std::string objective = "listmle+mse";  // listmle | mse | bce | pairwise | listmle+mse
  double w_listmle = 1.0, w_mse = 0.5, w_modality = 0.1;

  // ---- batches and schedule ----------------------------------------------------------
  int64_t list_size = 4;    // K scenarios per image
  int64_t batch_lists = 16; // B images per batch
  int64_t epochs = 30;      // used when steps == 0
  int64_t steps = 0;        // total optimizer steps; 0 = epochs * batches per epoch
  double lr = 1e-3;   // 3e-3 let the ViT collapse to a constant image embedding for 500-1200 steps
  double weight_decay = 0.01;
  int64_t warmup = -1;      // warmup steps; -1 = 5% of the run
  double grad_clip = 1.0;   // global L2 norm; 0 = no clipping (the norm is still logged)
  bool freeze_towers = false;
  int64_t train_last_layers = -1;  // >= 0: towers frozen except their last N layers
  double data_fraction = 1.0;
  uint64_t seed = 0;
  // OpenMP threads; 0 = all cores; -1 (auto) = 1 for the built-in small model, whose
  // tiny ops lose more to thread start-up than they gain (100 steps: 7.5 s on one
  // thread, 68 s on two, on a loaded 2-core machine), and all cores with --model.
  int threads = -1;
  std::string device = "cpu";
  // fp32 | tf32 (CUDA) | bf16 (autocast): examples/finetune/precision.h
  std::string precision = "fp32";
  double head_dropout = 0.1;

  // ---- the built-in small CLIP (ignored with --model) --------------------------------
  int64_t image_size = 64;
  int64_t patch_size = 16;   // 4 x 4 patches: the from-scratch ViT learns the scene in minutes
  int64_t width = 64;
  int64_t layers = 2;
  int64_t heads = 4;
  int64_t context_length = 20;  // the synthetic texts need <= 16; with --model: its max positions (77)
  int64_t synthetic_images = 1000;

  // ---- evaluation, checkpoints, output -----------------------------------------------
  int64_t eval_every = 0;   // 0 = once per epoch
  int64_t save_every = 0;   // 0 = only at the end (and on SIGINT/SIGTERM)
  int64_t log_every = 50;   // plain progress lines when stdout is not a terminal
  std::string out = "runs/finetune";
  bool resume = false;
  bool compare = false;
  int seeds = 1;
  std::string ablate;       // "" | "image" | "text"
  bool trim_text = false;   // cut each batch's texts to its longest real one (data/batching.h)
  bool quiet = false;       // no progress output (tests, --compare's inner runs print less)
  bool compare_part = false;  // set by --compare on its runs (not an option): they restart, never resume

  // Debugging the fault path: pretend the loss is NaN at this step (-1 = never).
  int64_t inject_nan_at_step = -1;

  // The loss weights the objective stands for. Single-term objectives use weight 1 for
  // their term; --w-listmle / --w-mse set the mix of listmle+mse. Every objective keeps
  // the modality term at --w-modality, so predicted_modality means the same in all.
  mms::losses::ObjectiveWeights weights() const;
  // Throws mms::Error naming the first inconsistent setting.
  void validate() const;
  nlohmann::json to_json() const;
  // The settings that decide the training trajectory: a resumed run must match them.
  nlohmann::json trajectory_json() const;
};

// The objectives --compare trains, in table order.
const std::vector<std::string>& compare_objectives();

// Parses argv into options. Returns false after printing help / an error (exit code in
// *exit_code).
bool parse_options(int argc, char** argv, Options* options, int* exit_code);

}  // namespace mmsft
