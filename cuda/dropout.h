// Fused inverted dropout from the Philox stream of cuda/philox.h: one launch that draws
// the mask and applies it, bit-identical to rand + compare + where + mul and to the CPU
// kernel (tensor/cpu/dropout.cpp). See cuda/dropout.cu for the lesson.
#pragma once

#include <cstdint>

#include "cuda/common.h"

namespace mms::cuda {

// out[i] = x[i] * (u(seed, offset + i) >= T(p) ? T(1/(1-p)) : 0) for i < n; x and out
// contiguous, Float32 or Float64, same type; p in [0, 1] (1/(1-p) is taken as 0 at p = 1).
// The backward is the same call on the gradient with the same (p, seed, offset).
void dropout(const void* x, void* out, ScalarType type, int64_t n, double p, uint64_t seed,
             uint64_t offset, cudaStream_t stream);
// The lesson's baseline: one thread and one full Philox evaluation per element (4x the
// arithmetic of the tuned kernel, which uses all four words of each evaluation).
void dropout_f32_naive(const float* x, float* out, int64_t n, double p, uint64_t seed,
                       uint64_t offset, cudaStream_t stream);

}  // namespace mms::cuda
