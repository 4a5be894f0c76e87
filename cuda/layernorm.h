// Layer normalisation over the last dim of a contiguous [rows, cols] matrix, with fp32
// statistics saved for the backward.
#pragma once

#include <cstdint>

#include "cuda/common.h"

namespace mms::cuda {

// y = (x - mean) * rstd * weight + bias; weight/bias may be null (= 1 / = 0).
// mean[rows] and rstd[rows] = 1/sqrt(biased var + eps) are written for the backward.
// Tuned: a warp per row (two-pass mean then variance, the row re-read from L1).
void layer_norm_forward_f32(const float* x, const float* weight, const float* bias, float* y,
                            float* mean, float* rstd, int64_t rows, int64_t cols, float eps,
                            cudaStream_t stream);
// The same with y written as bf16 (autocast's bf16 activations: the next GEMM's operand).
void layer_norm_forward_f32_bf16(const float* x, const float* weight, const float* bias, uint16_t* y,
                                 float* mean, float* rstd, int64_t rows, int64_t cols, float eps,
                                 cudaStream_t stream);
// Baseline: one thread per row.
void layer_norm_forward_f32_naive(const float* x, const float* weight, const float* bias, float* y,
                                  float* mean, float* rstd, int64_t rows, int64_t cols, float eps,
                                  cudaStream_t stream);
// grad_x (required) and, when non-null, grad_weight = sum_rows g * xhat and
// grad_bias = sum_rows g (written, not accumulated; deterministic: no atomics).
// grad_x_addend, when non-null ([rows, cols], not aliasing grad_x), is added to grad_x.
void layer_norm_backward_f32(const float* grad_y, const float* x, const float* weight,
                             const float* mean, const float* rstd, const float* grad_x_addend, float* grad_x,
                             float* grad_weight, float* grad_bias, int64_t rows, int64_t cols,
                             cudaStream_t stream);
// The same from a bf16 grad_y (the gradient of a bf16 y); every output float32.
void layer_norm_backward_bf16_grad(const uint16_t* grad_y, const float* x, const float* weight,
                                   const float* mean, const float* rstd, const float* grad_x_addend, float* grad_x,
                                   float* grad_weight, float* grad_bias, int64_t rows, int64_t cols,
                                   cudaStream_t stream);

}  // namespace mms::cuda
