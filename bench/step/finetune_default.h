// The finetune program's default run, as bench/step times it (see finetune_default.cpp).
#pragma once

#include <cstdint>
#include <memory>

#include "losses/objective.h"
#include "vlm/pair_scorer.h"

namespace mmsbench {

// Everything one timed step needs: the model and the training settings around it.
struct StepSpec {
  std::shared_ptr<mms::vlm::PairScorer> model;
  mms::vlm::CLIPConfig config;
  mms::vlm::PairHeadConfig head;
  int64_t lists = 0;  // B; 0 = the caller's --batch-lists
  int64_t list_size = 4, text_len = 77;
  double lr = 1e-5, weight_decay = 0.01;
  double grad_clip = 0;  // 0 = no clipping (the peer's default); > 0: clip_grad_norm_
  mms::losses::ObjectiveWeights weights = mms::losses::ObjectiveWeights::combined(1.0, 0.5, 0.1);
};

// Loads (or, the first time, generates and caches) the synthetic stand-in and its BPE
// vocabulary, as `finetune` does; log lines go to stderr when verbose.
StepSpec default_finetune_step(bool verbose);  // built exactly as finetune builds it

}  // namespace mmsbench
