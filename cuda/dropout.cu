// dropout.cu: inverted dropout fused into one kernel, the mask regenerated from Philox.
//
// Computes: out[i] = x[i] * (u_i >= p ? 1/(1-p) : 0), u_i = the Philox uniform at stream
// position offset + i (cuda/philox.h), p and 1/(1-p) rounded to the element type first.
// That is exactly what the four-launch composition computed (u = rand(shape, seed,
// offset); keep = u >= p; mask = where(keep, 1/(1-p), 0); out = x * mask), so the two
// agree bit for bit, and so do the CPU kernel (tensor/cpu/dropout.cpp) and this one.
// The backward is the same kernel on the gradient with the same (p, seed, offset): the
// mask is recomputed from the counter, never stored.
//
// Shapes: x and out contiguous, n elements, float32 or float64.
//
// Algorithm: one Philox-4x32-10 evaluation gives the 32-bit words of stream positions
// 4b .. 4b+3 (counter = b = (offset + i) / 4, lane = (offset + i) % 4). Each thread takes
// one such block b in a grid-stride loop and handles the (up to) four elements of x that
// fall in it; an offset that is not a multiple of 4 only makes the first and the last
// block partial. Tuned float32 path: when offset % 4 == 0 the four elements of a block
// are x[4k .. 4k+3], so with 16-byte aligned x and out a thread moves them as one float4.
//
// Floors (float32): bytes moved = read x + write out = 8 B/element; at ~3 TB/s (H100 SXM
// HBM3) a [32*4*77, 3072] activation (3.8M elements, 30 MB) takes ~10 us. Compute: one
// Philox block is ~10 rounds x (2 wide multiplies + 4 xor/add) ~ 100 integer ops, ~25
// per element; at ~25-30 T int32 op/s that is ~40% of the memory time, so it hides under
// the loads, but only because all four words are used: the naive kernel (one evaluation
// per element, ~100 ops/element) is compute bound. The composition it replaces moved
// ~26 B/element over four launches (rand writes 4; compare reads 4, writes 1; where reads
// 1, writes 4; mul reads 8, writes 4) and kept the 4 B/element mask alive until backward.
// Unmeasured on a GPU so far: bench/kernels reports it (fused vs naive vs composition).
#include <cstdint>

#include "cuda/check.h"
#include "cuda/device_utils.cuh"
#include "cuda/dropout.h"
#include "cuda/philox.h"

namespace mms::cuda {

namespace {

constexpr int kThreads = 256;
// Stream positions wrap modulo 2^64, so block numbers wrap modulo 2^62.
constexpr uint64_t kBlockMask = (uint64_t(1) << 62) - 1;

template <typename T>
__device__ __forceinline__ T dropped(T x, uint32_t bits, T threshold, T scale) {
  // x * 0 for dropped elements (not a literal 0): -0 and NaN come out as the
  // composition's mul(x, mask) gave them
  const T u = static_cast<T>(mms_philox_bits_to_uniform(bits));
  return x * (u >= threshold ? scale : T(0));
}

// kVector: float32 with offset % 4 == 0 and 16-byte aligned x/out, so block k covers
// x[4k .. 4k+3] and a full block is one float4.
template <typename T, bool kVector>
__global__ void dropout_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t n,
                               uint64_t seed, uint64_t offset, T threshold, T scale,
                               int64_t block_count) {
  const uint64_t first_block = offset / 4;
  const int64_t head = int64_t(offset % 4);  // lanes of the first block before element 0
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < block_count;
       k += int64_t(gridDim.x) * blockDim.x) {
    const MmsPhilox4 words = mms_philox_block(seed, (first_block + uint64_t(k)) & kBlockMask);
    const int64_t base = 4 * k - head;  // element index of lane 0 (negative in a partial head)
    if constexpr (kVector) {
      if (base + 4 <= n) {
        const float4 v = reinterpret_cast<const float4*>(x)[k];
        float4 r;
        r.x = dropped(v.x, words.x[0], threshold, scale);
        r.y = dropped(v.y, words.x[1], threshold, scale);
        r.z = dropped(v.z, words.x[2], threshold, scale);
        r.w = dropped(v.w, words.x[3], threshold, scale);
        reinterpret_cast<float4*>(out)[k] = r;
        continue;
      }
    }
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      const int64_t i = base + lane;
      if (i >= 0 && i < n) out[i] = dropped(x[i], words.x[lane], threshold, scale);
    }
  }
}

// Baseline: element i evaluates Philox for its own position and keeps one word of four.
__global__ void dropout_naive_kernel(const float* __restrict__ x, float* __restrict__ out,
                                     int64_t n, uint64_t seed, uint64_t offset, float threshold,
                                     float scale) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = dropped(x[i], mms_philox_u32(seed, offset + uint64_t(i)), threshold, scale);
}

double dropout_scale(double p) { return p < 1.0 ? 1.0 / (1.0 - p) : 0.0; }

bool aligned16(const void* pointer) { return reinterpret_cast<uintptr_t>(pointer) % 16 == 0; }

}  // namespace

void dropout(const void* x, void* out, ScalarType type, int64_t n, double p, uint64_t seed,
             uint64_t offset, cudaStream_t stream) {
  MMS_CUDA_REQUIRE(p >= 0.0 && p <= 1.0, "dropout: probability must be in [0, 1]");
  if (n == 0) return;
  // Philox blocks touched: the head lanes before element 0 plus n elements, in fours.
  const int64_t block_count = (int64_t(offset % 4) + n + 3) / 4;
  const unsigned grid = grid_for(block_count, kThreads);
  const double scale = dropout_scale(p);
  if (type == ScalarType::Float32) {
    const float* xf = static_cast<const float*>(x);
    float* of = static_cast<float*>(out);
    if (offset % 4 == 0 && aligned16(x) && aligned16(out)) {
      dropout_kernel<float, true><<<grid, kThreads, 0, stream>>>(
          xf, of, n, seed, offset, float(p), float(scale), block_count);
    } else {
      dropout_kernel<float, false><<<grid, kThreads, 0, stream>>>(
          xf, of, n, seed, offset, float(p), float(scale), block_count);
    }
  } else if (type == ScalarType::Float64) {
    dropout_kernel<double, false><<<grid, kThreads, 0, stream>>>(
        static_cast<const double*>(x), static_cast<double*>(out), n, seed, offset, p, scale,
        block_count);
  } else {
    MMS_CUDA_REQUIRE(false, "dropout: CUDA supports float32 or float64 tensors");
  }
  MMS_CUDA_LAUNCH_CHECK();
}

void dropout_f32_naive(const float* x, float* out, int64_t n, double p, uint64_t seed,
                       uint64_t offset, cudaStream_t stream) {
  MMS_CUDA_REQUIRE(p >= 0.0 && p <= 1.0, "dropout: probability must be in [0, 1]");
  if (n == 0) return;
  dropout_naive_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(
      x, out, n, seed, offset, float(p), float(dropout_scale(p)));
  MMS_CUDA_LAUNCH_CHECK();
}

}  // namespace mms::cuda
