#include "nn/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "tensor/error.h"

namespace mms::nn {

void WarmupCosineSchedule::validate() const {
  MMS_CHECK(warmup_steps >= 0 && total_steps >= 1 && warmup_steps <= total_steps,
            "WarmupCosineSchedule: need 0 <= warmup_steps <= total_steps and total_steps >= 1, got warmup ",
            warmup_steps, ", total ", total_steps);
  MMS_CHECK(base_lr >= 0 && min_lr >= 0 && min_lr <= base_lr, "WarmupCosineSchedule: need 0 <= min_lr <= base_lr, got ",
            min_lr, " and ", base_lr);
}

double WarmupCosineSchedule::lr(int64_t step) const {
  validate();
  MMS_CHECK(step >= 0, "WarmupCosineSchedule: step must be >= 0, got ", step);
  if (step < warmup_steps)
    return base_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  const int64_t decay_steps = total_steps - warmup_steps;
  const double progress =
      decay_steps == 0 ? 1.0
                       : std::clamp(static_cast<double>(step - warmup_steps) / static_cast<double>(decay_steps), 0.0, 1.0);
  return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

}  // namespace mms::nn
