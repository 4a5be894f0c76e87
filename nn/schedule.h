// Learning-rate schedule: linear warmup, then cosine decay to a floor.
//
//   step < warmup:   lr = base * (step + 1) / warmup
//   after warmup:    p = (step - warmup) / (total - warmup), clamped to [0, 1]
//                    lr = floor + (base - floor) * (1 + cos(pi p)) / 2
//
// `step` is the 0-based index of the optimizer update about to run. Unlike Hugging
// Face's get_cosine_schedule_with_warmup (lr = base * step / warmup), the first update
// already gets base / warmup rather than 0, so no step is wasted; the warmup still
// reaches base exactly at step warmup - 1 and cosine starts from base at step warmup.
// Past `total` the lr stays at the floor.
#pragma once

#include <cstdint>

namespace mms::nn {

struct WarmupCosineSchedule {
  double base_lr = 1e-4;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  double min_lr = 0.0;  // the floor

  // Throws mms::Error on inconsistent settings (negative counts, warmup > total,
  // floor above base).
  void validate() const;
  double lr(int64_t step) const;
};

}  // namespace mms::nn
