// Small AVX-512 helpers shared by the files compiled with AVX-512 (sgemm_avx512.cpp,
// attention_avx512.cpp). Include only from those: every function here is inline and
// must never be built for a CPU without AVX-512 (see gemm_kernel.h).
#pragma once

#if !defined(__AVX512F__) || !defined(__AVX512DQ__)
#error "simd512.h is for the files compiled with -mavx512f -mavx512dq"
#endif

#include <immintrin.h>

#include <cstdint>

namespace mms::cpu::simd512 {

// The first `count` of 16 lanes (none for count <= 0).
inline __mmask16 first_lanes(int64_t count) {
  if (count <= 0) return 0;
  return count >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << count) - 1u);
}

// In-register transpose of 16 rows of 16 floats: r[i][j] -> r[j][i]. Three rounds of
// shuffles: pairs of floats, then 4 x 4 blocks inside each 128-bit lane, then lanes.
inline void transpose16x16(__m512 r[16]) {
  __m512 t[16], u[16], v[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int b = 0; b < 16; b += 4) {
    u[b + 0] = _mm512_shuffle_ps(t[b + 0], t[b + 2], 0x44);
    u[b + 1] = _mm512_shuffle_ps(t[b + 0], t[b + 2], 0xEE);
    u[b + 2] = _mm512_shuffle_ps(t[b + 1], t[b + 3], 0x44);
    u[b + 3] = _mm512_shuffle_ps(t[b + 1], t[b + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {
    v[j] = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);
    v[4 + j] = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
    v[8 + j] = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
    v[12 + j] = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
  }
  for (int j = 0; j < 8; ++j) {
    r[j] = _mm512_shuffle_f32x4(v[j], v[8 + j], 0x88);
    r[8 + j] = _mm512_shuffle_f32x4(v[j], v[8 + j], 0xDD);
  }
}

}  // namespace mms::cpu::simd512
