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
// fall in it: x[4k - head .. 4k - head + 3], head = offset % 4, k = b - offset / 4. An
// offset that is not a multiple of 4 only makes the first and the last block partial.
// Memory access, float32 (three variants, picked per launch):
//   head 0, x/out 16-byte aligned: a full block is one float4 load and store;
//   head 2 (the default generator reserves even counts, so offsets are even), x/out
//     8-byte aligned: two float2 (x[4k-2..4k-1], x[4k..4k+1]);
//   otherwise (odd offsets, misaligned views; float64 always): four scalar accesses.
// Why bother: random.cu's tuned kernel, which stores its four values as scalars, measured
// 27% of memcpy bandwidth on an H100 (docs/kernels.md) while the float4 elementwise
// kernels reach ~100%: a warp's scalar accesses 16 bytes apart use a quarter of each
// memory transaction.
//
// Floors (float32): bytes moved = read x + write out = 8 B/element; a [32*4*77, 3072]
// activation (30.3M elements, 242 MB) takes ~81 us at the 2984 GB/s memcpy rate measured
// on an H100 80GB HBM3. Compute: bench/kernels measured random.cu's naive kernel (one
// Philox evaluation per element, ~100 integer ops) at 160 us for those 30.3M elements,
// ~190 G evaluations/s; the fused kernel needs one evaluation per four elements, ~40 us
// of issue time, so it can hide under the ~81 us of memory traffic, but only because
// all four words are used: the naive kernel (one evaluation per element) is compute
// bound at ~2x the floor. The composition it replaces moved ~26 B/element over four
// launches (rand writes 4; compare reads 4, writes 1; where reads 1, writes 4; mul reads
// 8, writes 4) and kept the 4 B/element mask alive until the backward.
// Unmeasured on a GPU so far: bench/kernels times composed / naive / per-lane / float2 /
// float4 after checking each bit for bit against the CPU.
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

// kWidth: how the four elements of a full block are moved (see the header): 4 = one
// float4 (float32, head 0, 16-byte aligned), 2 = two float2 (float32, head 2, 8-byte
// aligned), 1 = four scalars (any type, head, alignment). Partial blocks (the first and
// the last) always take the scalar path.
template <typename T, int kWidth>
__global__ void dropout_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t n,
                               uint64_t seed, uint64_t offset, T threshold, T scale,
                               int64_t block_count) {
  const uint64_t first_block = offset / 4;
  const int64_t head = int64_t(offset % 4);  // lanes of the first block before element 0
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < block_count;
       k += int64_t(gridDim.x) * blockDim.x) {
    const MmsPhilox4 words = mms_philox_block(seed, (first_block + uint64_t(k)) & kBlockMask);
    const int64_t base = 4 * k - head;  // element index of lane 0 (negative in a partial head)
    if constexpr (kWidth == 4) {
      if (base + 4 <= n) {  // head is 0, so base = 4k >= 0
        const float4 v = reinterpret_cast<const float4*>(x)[k];
        float4 r;
        r.x = dropped(v.x, words.x[0], threshold, scale);
        r.y = dropped(v.y, words.x[1], threshold, scale);
        r.z = dropped(v.z, words.x[2], threshold, scale);
        r.w = dropped(v.w, words.x[3], threshold, scale);
        reinterpret_cast<float4*>(out)[k] = r;
        continue;
      }
    } else if constexpr (kWidth == 2) {
      if (base >= 0 && base + 4 <= n) {  // head is 2: base = 4k - 2 is even
        const float2 lo = *reinterpret_cast<const float2*>(x + base);
        const float2 hi = *reinterpret_cast<const float2*>(x + base + 2);
        float2 r_lo, r_hi;
        r_lo.x = dropped(lo.x, words.x[0], threshold, scale);
        r_lo.y = dropped(lo.y, words.x[1], threshold, scale);
        r_hi.x = dropped(hi.x, words.x[2], threshold, scale);
        r_hi.y = dropped(hi.y, words.x[3], threshold, scale);
        *reinterpret_cast<float2*>(out + base) = r_lo;
        *reinterpret_cast<float2*>(out + base + 2) = r_hi;
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

bool aligned(const void* pointer, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(pointer) % bytes == 0;
}

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
    const uint64_t head = offset % 4;
    if (head == 0 && aligned(x, 16) && aligned(out, 16)) {
      dropout_kernel<float, 4><<<grid, kThreads, 0, stream>>>(xf, of, n, seed, offset, float(p),
                                                               float(scale), block_count);
    } else if (head == 2 && aligned(x, 8) && aligned(out, 8)) {
      dropout_kernel<float, 2><<<grid, kThreads, 0, stream>>>(xf, of, n, seed, offset, float(p),
                                                               float(scale), block_count);
    } else {
      dropout_kernel<float, 1><<<grid, kThreads, 0, stream>>>(xf, of, n, seed, offset, float(p),
                                                               float(scale), block_count);
    }
  } else if (type == ScalarType::Float64) {
    dropout_kernel<double, 1><<<grid, kThreads, 0, stream>>>(
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
