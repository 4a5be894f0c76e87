// Device-side helpers shared by the kernel families (included only by .cu files):
// launch geometry, warp and block reductions, and exact bf16/f16 conversions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math_constants.h>

#include <cstdint>
#include <cstring>

#include "cuda/common.h"
#include "cuda/fast_divider.h"
#include "cuda/check.h"

namespace mms::cuda {

constexpr int kWarpSize = 32;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Blocks for a grid-stride loop over n items: enough to fill the GPU several times over,
// never more than the items need.
inline unsigned grid_for(int64_t n, int threads_per_block) {
  const int64_t wanted = ceil_div(n, threads_per_block);
  const int64_t cap = int64_t(1) << 20;
  return static_cast<unsigned>(wanted < 1 ? 1 : (wanted > cap ? cap : wanted));
}

// ---- reductions -------------------------------------------------------------------
__device__ __forceinline__ float warp_sum(float value) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

__device__ __forceinline__ double warp_sum(double value) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

// max that propagates NaN (as torch.max does), so a NaN in a row is never hidden.
__device__ __forceinline__ float nan_max(float a, float b) { return (a > b || a != a) ? a : b; }
__device__ __forceinline__ float nan_min(float a, float b) { return (a < b || a != a) ? a : b; }

__device__ __forceinline__ float warp_max(float value) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    value = nan_max(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}

__device__ __forceinline__ float warp_min(float value) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    value = nan_min(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}

// A running log-sum-exp as (max, sum of exp(x - max)); merging two never forms inf - inf.
struct LseState {
  float max;
  float sum;
};

__device__ __forceinline__ LseState lse_merge(LseState a, LseState b) {
  if (a.max == -CUDART_INF_F) return b;
  if (b.max == -CUDART_INF_F) return a;
  const float m = fmaxf(a.max, b.max);
  return {m, a.sum * __expf(a.max - m) + b.sum * __expf(b.max - m)};
}

__device__ __forceinline__ LseState lse_add(LseState a, float x) {
  if (x == -CUDART_INF_F) return a;
  if (x > a.max) return {x, a.sum * expf(a.max - x) + 1.0f};  // expf(-inf) = 0
  return {a.max, a.sum + expf(x - a.max)};
}

__device__ __forceinline__ LseState warp_lse(LseState state) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    LseState other{__shfl_xor_sync(0xffffffffu, state.max, offset),
                   __shfl_xor_sync(0xffffffffu, state.sum, offset)};
    state = lse_merge(state, other);
  }
  return state;
}

__device__ __forceinline__ float lse_value(LseState state) {
  if (state.max == -CUDART_INF_F) return -CUDART_INF_F;
  if (state.max == CUDART_INF_F) return CUDART_INF_F;
  return state.max + logf(state.sum);
}

// Block-wide reduction of one float per thread (blockDim.x a multiple of 32, <= 1024).
// Every thread gets the result. `scratch` holds 32 floats of shared memory.
template <typename Combine>
__device__ __forceinline__ float block_reduce(float value, float* scratch, Combine combine,
                                              float identity) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    value = combine(value, __shfl_xor_sync(0xffffffffu, value, offset));
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  value = lane < warps ? scratch[lane] : identity;
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    value = combine(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}

struct SumOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct MaxOp {
  __device__ float operator()(float a, float b) const { return nan_max(a, b); }
};
struct MinOp {
  __device__ float operator()(float a, float b) const { return nan_min(a, b); }
};

// ---- strided offsets ----------------------------------------------------------------
// Offsets of `kOperands` operands sharing one (coalesced) shape, for a flat row-major
// index. Passed by value as a kernel argument.
//
// When every flat index fits in 31 bits (any tensor of at most 2^31 elements) the
// coordinates come from FastDivider's multiply-and-shift in 32-bit arithmetic instead
// of 64-bit `/` and `%`, which the GPU can only emulate (cuda/fast_divider.h says why
// that matters); the offsets themselves stay 64-bit.
template <int kOperands>
struct OffsetCalculator {
  int ndim;
  bool index32;  // every flat index < 2^31: dividers[] apply
  FastDivider dividers[kMaxDims];
  int64_t sizes[kMaxDims];
  int64_t strides[kOperands][kMaxDims];

  __device__ __forceinline__ void offsets(int64_t flat, int64_t* out) const {
#pragma unroll
    for (int t = 0; t < kOperands; ++t) out[t] = 0;
    if (index32) {
      uint32_t rest = static_cast<uint32_t>(flat);
      for (int d = ndim - 1; d >= 0; --d) {
        const uint32_t quotient = dividers[d].divide(rest);
        const int64_t coordinate = rest - quotient * dividers[d].divisor;
        rest = quotient;
#pragma unroll
        for (int t = 0; t < kOperands; ++t) out[t] += coordinate * strides[t][d];
      }
      return;
    }
    for (int d = ndim - 1; d >= 0; --d) {
      const int64_t size = sizes[d];
      const int64_t coordinate = flat % size;
      flat /= size;
#pragma unroll
      for (int t = 0; t < kOperands; ++t) out[t] += coordinate * strides[t][d];
    }
  }
};

template <int kOperands>
inline OffsetCalculator<kOperands> make_offset_calculator(const StridedLayout* layouts) {
  OffsetCalculator<kOperands> calc{};
  calc.ndim = layouts[0].ndim;
  int64_t elements = 1;
  for (int d = 0; d < calc.ndim; ++d) {
    calc.sizes[d] = layouts[0].sizes[d];
    elements *= calc.sizes[d];
    for (int t = 0; t < kOperands; ++t) calc.strides[t][d] = layouts[t].strides[d];
  }
  calc.index32 = elements > 0 && elements <= (int64_t(1) << 31);  // flat indices 0 .. 2^31 - 1
  if (calc.index32)
    for (int d = 0; d < calc.ndim; ++d) calc.dividers[d] = FastDivider(static_cast<uint32_t>(calc.sizes[d]));
  return calc;
}

// ---- 16-bit floats, bit-exact with mms::BFloat16 / mms::Float16 on the host ----------
__host__ __device__ __forceinline__ float bf16_bits_to_float(uint16_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  ::memcpy(&f, &u, 4);
  return f;
}

__host__ __device__ __forceinline__ uint16_t float_to_bf16_bits(float value) {
  uint32_t u;
  ::memcpy(&u, &value, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  const uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + rounding) >> 16);
}

__device__ __forceinline__ float f16_bits_to_float(uint16_t bits) {
  return __half2float(__ushort_as_half(bits));
}

__device__ __forceinline__ uint16_t float_to_f16_bits(float value) {
  return __half_as_ushort(__float2half_rn(value));
}

// Reads a __device__ error counter on stream() and resets it to 0: how kernels report
// bad input (an out-of-range index, a mask cuDNN cannot take) without aborting. A host
// wait, so only debug-mode checks call it.
template <typename Counter>
int64_t take_device_counter(Counter& counter) {
  unsigned long long count = 0;
  const unsigned long long zero = 0;
  MMS_CUDA_CHECK(cudaMemcpyFromSymbolAsync(&count, counter, sizeof(count), 0, cudaMemcpyDeviceToHost, stream()));
  MMS_CUDA_CHECK(cudaMemcpyToSymbolAsync(counter, &zero, sizeof(zero), 0, cudaMemcpyHostToDevice, stream()));
  synchronize();
  return static_cast<int64_t>(count);
}

}  // namespace mms::cuda
