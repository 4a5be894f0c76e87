// Division by an integer the host knows in advance, as one multiply-high and a shift.
//
// Why: every strided kernel (copies, broadcasting elementwise, where) turns a flat
// element index into coordinates with a division and a remainder per dimension. GPUs
// have no integer divide instruction: `/` on 64-bit integers compiles to a software
// routine of ~70 instructions, per dimension, per element, which made the strided copy
// the largest single cost of a training step (38% of the GPU time of a bf16 ViT-B/32
// step on an H200, tools/gpu_profile.sh). The divisors are the tensor's sizes, fixed
// for a whole launch, so the host can precompute a "magic" multiplier once.
//
// The method (Granlund & Montgomery, "Division by invariant integers using
// multiplication", PLDI 1994; the same one PyTorch's IntDivider uses): for a divisor d in
// [1, 2^31], take s = ceil(log2 d) and m = floor(2^32 (2^s - d) / d) + 1, which fits in 32
// bits. Then for every n in [0, 2^31):
//     n / d == (umulhi(n, m) + n) >> s
// where umulhi is the high 32 bits of the 64-bit product (__umulhi on the GPU). n < 2^31
// keeps umulhi(n, m) + n below 2^32. tests/test_fast_divider.cpp checks it on the host.
#pragma once

#include <cstdint>

#ifdef __CUDACC__
#define MMS_FAST_DIVIDER_FN __host__ __device__ __forceinline__
#else
#define MMS_FAST_DIVIDER_FN inline
#endif

namespace mms::cuda {

struct FastDivider {
  uint32_t divisor = 1;
  uint32_t magic = 1;  // d = 1: s = 0, m = 1, and umulhi(n, 1) = 0 gives n
  uint32_t shift = 0;

  FastDivider() = default;
  // divisor in [1, 2^31]; the caller checks the range (every size of a tensor of at most
  // 2^31 elements is in it).
  explicit FastDivider(uint32_t d) : divisor(d) {
    while (shift < 32 && (uint64_t(1) << shift) < d) ++shift;
    magic = static_cast<uint32_t>(((uint64_t(1) << 32) * ((uint64_t(1) << shift) - d)) / d + 1);
  }

  MMS_FAST_DIVIDER_FN uint32_t divide(uint32_t n) const {  // n in [0, 2^31)
#ifdef __CUDA_ARCH__
    const uint32_t high = __umulhi(n, magic);
#else
    const uint32_t high = static_cast<uint32_t>((uint64_t(n) * magic) >> 32);
#endif
    return (high + n) >> shift;
  }
};

}  // namespace mms::cuda

#undef MMS_FAST_DIVIDER_FN
