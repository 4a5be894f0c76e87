// Autocast: bf16 mixed precision for the GEMMs of autograd's linear and matmul.
//
//   {
//     AutocastGuard autocast(DType::BFloat16);
//     Tensor loss = model.forward(...);   // linear/matmul run bf16 x bf16 -> float32
//     loss.backward();                    // their backward GEMMs too
//   }
//
// While a guard is active on this thread, autograd's linear() and matmul() cast float32
// operands to bfloat16, run the mixed GEMM (bf16 inputs, float32 accumulation and
// output: ops::matmul / ops::linear) and save the bf16 copies for the backward (half the
// memory of float32 activations). The backward casts the float32 upstream gradient to
// bf16 and runs the two mixed GEMMs, so gradients arrive in float32 at float32 inputs:
// parameters ("master weights"), their gradients and the optimizer state stay float32.
// Attention's GEMM path (short sequences on CUDA) runs QK^T and PV the same way, with
// float32 scores and softmax (autograd/attention.cpp).
//
// bf16 activations: a linear asked for it (AutocastOutput::BFloat16, autograd/api.h)
// returns bf16 instead of float32 -- the MLP's up-projection, whose activation then runs
// on bf16 (float32 math, one rounding), and attention's packed q/k/v projection where
// attention takes bf16 operands, whose attention output is then bf16 too. A layer norm
// asked for it writes its output as bf16 for the linear that reads it (float32
// statistics). Their gradients stay bf16 between those ops. Everything else (the
// residual stream, the statistics, the fused float32 attention kernel, losses, AdamW)
// runs in float32. (torch.autocast keeps layer norm outputs float32 and casts them
// for the next GEMM; the values that GEMM sees are the same.) A GEMM recorded under the
// guard keeps its mixed backward when backward() runs after the guard has ended.
//
// The switch is thread-local (like grad mode) and off by default; float64 operands are
// never cast (gradcheck stays float64). Expected error: bf16 keeps 8 bits of mantissa,
// so results move by ~2^-9 relative per operand; DESIGN.md's bf16 tolerance is 2e-2 of
// max |ref|.
#pragma once

#include <optional>

#include "tensor/dtype.h"

namespace mms {

// The dtype GEMM operands are cast to on this thread, or nullopt when autocast is off.
std::optional<DType> autocast_dtype();

// Sets the autocast dtype for its lifetime (nullopt turns autocast off inside an outer
// guard) and restores the previous setting when it ends. Only bfloat16 is supported.
class AutocastGuard {
 public:
  explicit AutocastGuard(std::optional<DType> dtype);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  std::optional<DType> previous_;
};

// Whether linears asked for bf16 outputs (AutocastOutput::BFloat16) return them: on
// unless the environment sets MMS_BF16_ACTIVATIONS=0 (read once), which makes every
// autocast linear return float32 as before -- the A/B switch for measuring what bf16
// activations buy, and a way around them should a device lack a bf16 kernel. The setter
// is for tests and benchmarks in one process.
bool bf16_activations_enabled();
void set_bf16_activations_enabled(bool enabled);

}  // namespace mms
