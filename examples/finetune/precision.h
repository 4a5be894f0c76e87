// The numeric precision a run trains and evaluates in (--precision):
//   fp32  float32 everywhere (the default; exact float32 GEMMs)
//   tf32  CUDA only: the float32 GEMMs on TF32 tensor cores (10-bit mantissa products,
//         float32 sums); everything else float32
//   bf16  autocast (autograd/autocast.h): bf16 GEMM operands and activations, float32
//         accumulation, master weights, AdamW state, norm statistics and losses; on
//         CUDA any float32 GEMM left runs in TF32, as bench/step's bf16 mode
// bench/step measures each mode's step time; docs/performance.md has the numbers.
#pragma once

#include <string>

#include "autograd/autocast.h"

namespace mmsft {

// Whether `precision` names one of the modes above.
bool known_precision(const std::string& precision);

// Applies a precision for its lifetime on this thread (autocast) and process (TF32),
// restoring what was set before when it ends.
class PrecisionScope {
 public:
  explicit PrecisionScope(const std::string& precision);
  ~PrecisionScope();
  PrecisionScope(const PrecisionScope&) = delete;
  PrecisionScope& operator=(const PrecisionScope&) = delete;

 private:
  mms::AutocastGuard autocast_;
  bool previous_tf32_ = false;
};

}  // namespace mmsft
