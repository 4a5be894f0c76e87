// random.cu: uniform and normal tensors from Philox-4x32-10 (cuda/philox.h).
//
// Shapes: contiguous dst of n elements, drawn at stream positions offset .. offset+n-1.
//
// Algorithm: one Philox evaluation yields four 32-bit words = stream positions
// 4b .. 4b+3. The tuned kernel gives each thread one such block b and writes the (up to)
// four elements of dst that fall in it, so an offset that is not a multiple of 4 just
// makes the first and last blocks partial. Box-Muller pairs (2j, 2j+1) never straddle a
// block, so normals also cost one evaluation per four values.
//
// Floor: 10 rounds x 2 mul.hi/lo per 4 values is ~20 integer ops per element: compute is
// far below bandwidth on any recent GPU, so the floor is writing 4 bytes per element
// (~1.3 us per million floats at 3 TB/s). Normals add double log/sqrt/sincos; random
// init happens once, so exact CPU parity is worth more than the speed of float math.
#include "cuda/check.h"
#include "cuda/device_utils.cuh"
#include "cuda/philox.h"
#include "cuda/random.h"

namespace mms::cuda {

namespace {

constexpr int kThreads = 256;

template <typename T, bool kNormal>
__global__ void random_block_kernel(T* __restrict__ dst, int64_t n, uint64_t seed, uint64_t offset,
                                    double a, double b, int64_t block_count) {
  const uint64_t first_block = offset / 4;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < block_count;
       k += int64_t(gridDim.x) * blockDim.x) {
    const uint64_t block = first_block + uint64_t(k);
    const MmsPhilox4 words = mms_philox_block(seed, block);
    float uniforms[4];
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) uniforms[lane] = mms_philox_bits_to_uniform(words.x[lane]);
    double values[4];
    if (kNormal) {
#pragma unroll
      for (int pair = 0; pair < 2; ++pair) {
        const double u1 = 1.0 - static_cast<double>(uniforms[2 * pair]);
        const double u2 = static_cast<double>(uniforms[2 * pair + 1]);
        const double radius = sqrt(-2.0 * log(u1));
        const double angle = 6.283185307179586476925286766559 * u2;
        values[2 * pair] = a + b * (radius * cos(angle));
        values[2 * pair + 1] = a + b * (radius * sin(angle));
      }
    }
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      const uint64_t position = block * 4 + lane;
      if (position < offset) continue;
      const uint64_t i = position - offset;
      if (i >= uint64_t(n)) continue;
      if (kNormal) {
        dst[i] = static_cast<T>(values[lane]);
      } else {  // the affine map in double, then rounded: as the CPU does it
        dst[i] = static_cast<T>(a + (b - a) * static_cast<double>(uniforms[lane]));
      }
    }
  }
}

__global__ void random_uniform_naive_kernel(float* __restrict__ dst, int64_t n, uint64_t seed,
                                            uint64_t offset, float low, float high) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = low + (high - low) * mms_philox_uniform(seed, offset + uint64_t(i));
}

template <bool kNormal>
void launch_random(void* dst, ScalarType type, int64_t n, uint64_t seed, uint64_t offset, double a,
                   double b, cudaStream_t stream) {
  if (n == 0) return;
  // Blocks touched: from the one holding `offset` to the one holding offset + n - 1.
  const int64_t block_count = int64_t((offset + uint64_t(n) - 1) / 4 - offset / 4 + 1);
  const unsigned grid = grid_for(block_count, kThreads);
  if (type == ScalarType::Float32) {
    random_block_kernel<float, kNormal><<<grid, kThreads, 0, stream>>>(
        static_cast<float*>(dst), n, seed, offset, a, b, block_count);
  } else if (type == ScalarType::Float64) {
    random_block_kernel<double, kNormal><<<grid, kThreads, 0, stream>>>(
        static_cast<double*>(dst), n, seed, offset, a, b, block_count);
  } else {
    MMS_CUDA_REQUIRE(false, "random: CUDA draws float32 or float64 tensors");
  }
  MMS_CUDA_LAUNCH_CHECK();
}

}  // namespace

void random_uniform(void* dst, ScalarType type, int64_t n, uint64_t seed, uint64_t offset,
                    double low, double high, cudaStream_t stream) {
  launch_random<false>(dst, type, n, seed, offset, low, high, stream);
}

void random_normal(void* dst, ScalarType type, int64_t n, uint64_t seed, uint64_t offset,
                   double mean, double stddev, cudaStream_t stream) {
  launch_random<true>(dst, type, n, seed, offset, mean, stddev, stream);
}

void random_uniform_naive(float* dst, int64_t n, uint64_t seed, uint64_t offset, float low,
                          float high, cudaStream_t stream) {
  if (n == 0) return;
  random_uniform_naive_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(dst, n, seed, offset,
                                                                              low, high);
  MMS_CUDA_LAUNCH_CHECK();
}

}  // namespace mms::cuda
