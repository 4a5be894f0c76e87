// Random tensors from the Philox stream of cuda/philox.h: element i of a tensor drawn at
// (seed, offset) uses stream position offset + i, exactly as the CPU backend does.
#pragma once

#include <cstdint>

#include "cuda/common.h"

namespace mms::cuda {

// dst[i] = low + (high - low) * u(seed, offset + i); dst contiguous Float32 or Float64.
void random_uniform(void* dst, ScalarType type, int64_t n, uint64_t seed, uint64_t offset,
                    double low, double high, cudaStream_t stream);
// dst[i] = mean + stddev * z(seed, offset + i); z from mms_philox_normal (double math).
void random_normal(void* dst, ScalarType type, int64_t n, uint64_t seed, uint64_t offset,
                   double mean, double stddev, cudaStream_t stream);
// The lesson's baseline: one full Philox evaluation per element (4x the work of the
// tuned kernel, which uses all four words of each evaluation).
void random_uniform_naive(float* dst, int64_t n, uint64_t seed, uint64_t offset, float low,
                          float high, cudaStream_t stream);

}  // namespace mms::cuda
