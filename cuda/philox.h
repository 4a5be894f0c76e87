// Philox-4x32-10: the one counter-based random stream of mmscale, shared bit for bit by
// the CPU kernels (tensor/cpu/) and the CUDA kernels (cuda/random.cu).
//
// Philox (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11) maps a
// 128-bit counter and a 64-bit key to 128 random bits with ten rounds of two 32x32->64
// multiplies. Because output depends only on (counter, key), any thread can produce
// any element without a shared state: the property that lets CPU and GPU agree.
//
// The stream contract (do not change without changing both backends and the tests):
//   A random tensor is drawn at (seed, offset). Its flat element i (row-major) uses the
//   stream position c = offset + i (uint64, wrapping).
//   Raw bits:   block = c / 4, lane = c % 4
//               counter = {lo32(block), hi32(block), 0, 0}, key = {lo32(seed), hi32(seed)}
//               u32(c) = philox4x32_10(counter, key)[lane]
//   Uniform:    u(c) = (u32(c) >> 8) * 2^-24, in [0, 1) with 24 bits: exact in float32
//               and float64 alike, so CPU float64 and CUDA float32 agree exactly.
//   Normal:     Box-Muller on the pair (2j, 2j+1) that c falls in, j = c / 2:
//               u1 = 1 - u(2j) in (0, 1] (never log 0), u2 = u(2j+1),
//               r = sqrt(-2 ln u1), z(c) = r cos(2 pi u2) if c is even, r sin(2 pi u2) if odd.
//               Each element depends on c alone, so an odd offset or a slice of the
//               stream reproduces the same values.
//   Precision:  mms_philox_normal() computes in double on both CPU and GPU (FP64 is
//               cheap on A100/H100 and random init is rare), so the float32 results of
//               the two backends agree to 1 ulp (libm and CUDA's double log/cos/sin are
//               within 1-2 double ulps, which almost always rounds to the same float).
//               mms_philox_normal_f32() is the all-float variant for hot paths; it stays
//               within 1e-5 absolute of the double version (|z| <= 5.8 for 24-bit u1).
//
// Usable from host C++ (g++, no CUDA headers) and from device code (nvcc).
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define MMS_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MMS_HOST_DEVICE inline
#endif

namespace mms_philox_detail {
constexpr uint32_t kMul0 = 0xD2511F53u;
constexpr uint32_t kMul1 = 0xCD9E8D57u;
constexpr uint32_t kWeyl0 = 0x9E3779B9u;  // golden ratio
constexpr uint32_t kWeyl1 = 0xBB67AE85u;  // sqrt(3) - 1
}  // namespace mms_philox_detail

struct MmsPhilox4 {
  uint32_t x[4];
};

MMS_HOST_DEVICE void mms_mulhilo32(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
  const uint64_t product = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(product >> 32);
  *lo = static_cast<uint32_t>(product);
}

// The raw generator: ten rounds, the key bumped by the Weyl constants between rounds.
MMS_HOST_DEVICE MmsPhilox4 mms_philox4x32_10(MmsPhilox4 counter, uint32_t key0, uint32_t key1) {
  using namespace mms_philox_detail;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key0 += kWeyl0;
      key1 += kWeyl1;
    }
    uint32_t hi0, lo0, hi1, lo1;
    mms_mulhilo32(kMul0, counter.x[0], &hi0, &lo0);
    mms_mulhilo32(kMul1, counter.x[2], &hi1, &lo1);
    MmsPhilox4 next;
    next.x[0] = hi1 ^ counter.x[1] ^ key0;
    next.x[1] = lo1;
    next.x[2] = hi0 ^ counter.x[3] ^ key1;
    next.x[3] = lo0;
    counter = next;
  }
  return counter;
}

// The four 32-bit outputs of one Philox block (stream positions 4*block .. 4*block+3).
MMS_HOST_DEVICE MmsPhilox4 mms_philox_block(uint64_t seed, uint64_t block) {
  MmsPhilox4 counter;
  counter.x[0] = static_cast<uint32_t>(block);
  counter.x[1] = static_cast<uint32_t>(block >> 32);
  counter.x[2] = 0;
  counter.x[3] = 0;
  return mms_philox4x32_10(counter, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// 32 random bits at stream position c.
MMS_HOST_DEVICE uint32_t mms_philox_u32(uint64_t seed, uint64_t c) {
  return mms_philox_block(seed, c / 4).x[c % 4];
}

// The 24-bit uniform of a raw word: exact in float, in [0, 1).
MMS_HOST_DEVICE float mms_philox_bits_to_uniform(uint32_t bits) {
  return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f);
}

// Uniform [0, 1) at stream position c (exactly representable in float32 and float64).
MMS_HOST_DEVICE float mms_philox_uniform(uint64_t seed, uint64_t c) {
  return mms_philox_bits_to_uniform(mms_philox_u32(seed, c));
}

// Standard normal at stream position c, computed in double (see the contract above).
MMS_HOST_DEVICE double mms_philox_normal(uint64_t seed, uint64_t c) {
  const uint64_t first = c & ~static_cast<uint64_t>(1);  // 2j
  const double u1 = 1.0 - static_cast<double>(mms_philox_uniform(seed, first));
  const double u2 = static_cast<double>(mms_philox_uniform(seed, first + 1));
  const double radius = sqrt(-2.0 * log(u1));
  const double angle = 6.283185307179586476925286766559 * u2;
  return (c & 1) ? radius * sin(angle) : radius * cos(angle);
}

// The same in float arithmetic (within 1e-5 absolute of mms_philox_normal).
MMS_HOST_DEVICE float mms_philox_normal_f32(uint64_t seed, uint64_t c) {
  const uint64_t first = c & ~static_cast<uint64_t>(1);
  const float u1 = 1.0f - mms_philox_uniform(seed, first);
  const float u2 = mms_philox_uniform(seed, first + 1);
  const float radius = sqrtf(-2.0f * logf(u1));
  const float angle = 6.2831853071795864769f * u2;
  return (c & 1) ? radius * sinf(angle) : radius * cosf(angle);
}
