// The finetune program's default run, as bench/step times it (see finetune_default.cpp).
#pragma once

#include <cstdint>
#include <memory>

#include "losses/objective.h"
#include "vlm/pair_scorer.h"

namespace mmsbench {

struct DefaultStep {
  std::shared_ptr<mms::vlm::PairScorer> model;  // built exactly as finetune builds it
  mms::vlm::CLIPConfig clip;
  mms::vlm::PairHeadConfig head;
  int64_t lists = 0, list_size = 0, text_len = 0;  // B, K, L
  double lr = 0, weight_decay = 0, grad_clip = 0;
  mms::losses::ObjectiveWeights weights;
  uint64_t seed = 0;
};

// Loads (or, the first time, generates and caches) the synthetic stand-in and its BPE
// vocabulary, as `finetune` does; log lines go to stderr when verbose.
DefaultStep default_finetune_step(bool verbose);

}  // namespace mmsbench
