// The optimizer's kernels: one fused AdamW step over every parameter tensor, and the
// global sum of squares of the gradients (for clipping by global norm).
#pragma once

#include <cstdint>

#include "cuda/common.h"

namespace mms::cuda {

struct AdamWPointers {
  float* param;
  const float* grad;
  float* exp_avg;
  float* exp_avg_sq;
  int64_t numel;
  float weight_decay;
};

// For each tensor and element (step >= 1; bias corrections computed in double):
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//   p -= lr * (m / (1-b1^t)) / (sqrt(v) / sqrt(1-b2^t) + eps) + lr * wd * p
// Multi-tensor: each launch carries up to 36 tensors' pointers as kernel arguments and
// maps each block to a 64K-element chunk of one of them, so ~200 CLIP tensors take a
// handful of launches instead of 200.
void adamw_f32(const AdamWPointers* tensors, int64_t count, double lr, double beta1, double beta2,
               double eps, int64_t step, cudaStream_t stream);
// The same update with the learning rate (*lr * lr_scale) and the step count t (*step,
// advanced by the caller before the call) read from device memory. One extra one-thread
// launch computes the constants; every kernel argument is then fixed from step to
// step, so a captured CUDA graph (cuda/graph.h) replays a correct AdamW update.
void adamw_f32_device_scalars(const AdamWPointers* tensors, int64_t count, const double* lr, double lr_scale,
                              double beta1, double beta2, double eps, const int64_t* step,
                              cudaStream_t stream);
// Baseline: one launch per tensor, same math.
void adamw_f32_per_tensor(const AdamWPointers* tensors, int64_t count, double lr, double beta1,
                          double beta2, double eps, int64_t step, cudaStream_t stream);

// *result (one double in device memory) = sum over tensors of sum(x^2): per-chunk
// partials in double, then one final reduction. Stays on the device: clipping by the
// global norm can scale the gradients without the host ever waiting for the value.
void sum_of_squares_f32(const float* const* tensors, const int64_t* numels, int64_t count,
                        double* result, cudaStream_t stream);

}  // namespace mms::cuda
