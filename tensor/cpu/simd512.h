// AVX-512 helpers shared by the files compiled with AVX-512 (sgemm_avx512.cpp,
// attention_avx512.cpp): lane masks, register transposes, and the broadcast product. Include only from those: every function here is inline and
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

// dst[c][r] = src[r][c] for r < rows and c < cols, and dst[c][r] = 0 for rows <= r <
// rows rounded up to 16 (src's rows src_stride apart; dst's rows dst_stride apart, at
// least rows rounded up to 16). 16 x 16 blocks through registers, the tails masked: K^T
// and V^T of an attention head, W^T of a narrow layer's weight.
inline void transpose_padded(const float* src, int64_t src_stride, int64_t rows, int64_t cols, float* dst,
                             int64_t dst_stride) {
  for (int64_t r0 = 0; r0 < rows; r0 += 16) {
    for (int64_t c0 = 0; c0 < cols; c0 += 16) {
      const __mmask16 in_cols = first_lanes(cols - c0);
      __m512 r[16];
      for (int64_t i = 0; i < 16; ++i)
        r[i] = r0 + i < rows ? _mm512_maskz_loadu_ps(in_cols, src + (r0 + i) * src_stride + c0) : _mm512_setzero_ps();
      transpose16x16(r);
      for (int64_t i = 0; i < 16 && c0 + i < cols; ++i) _mm512_storeu_ps(dst + (c0 + i) * dst_stride + r0, r[i]);
    }
  }
}

// ---- the broadcast product ---------------------------------------------------------
//
//   C[r][0:n] = alpha * sum_k A(r, k) * B[k][0:n]  + bias[0:n]  (+ beta C[r][0:n])
//
// for n a multiple of 16, with no packing: B's rows are read where they lie (at most 64
// floats of a row per tile, four registers), and A's values are broadcast straight from
// memory, A(r, k) = data[r * row_step + k * k_step], so A may be read along its rows or
// down its columns. A tile is 6 rows x 4 vectors: 24 accumulators, each B vector loaded
// once per k and used by 6 FMAs. Each element is summed over k in order, in one pass.
// The narrow path of our GEMM (sgemm_avx512.cpp) and every product of an attention head
// (attention_avx512.cpp) are this loop.
struct Broadcast {
  const float* data;
  int64_t row_step, k_step;
};

constexpr int64_t kBroadcastRows = 6;

// Rows [0, R) and columns [0, 16 V) of C (a, b, c, bias already at the tile's corner).
// The epilogue: alpha acc + bias, then + beta C when beta != 0 (C not read otherwise).
template <int R, int V>
inline void broadcast_tile(Broadcast a, const float* b, int64_t ldb, int64_t depth, float* c, int64_t ldc,
                           float alpha, float beta, const float* bias) {
  __m512 acc[R][V];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < depth; ++k) {
    __m512 row[V];
    for (int v = 0; v < V; ++v) row[v] = _mm512_loadu_ps(b + k * ldb + 16 * v);
    for (int r = 0; r < R; ++r) {
      const __m512 x = _mm512_set1_ps(a.data[r * a.row_step + k * a.k_step]);
      for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(x, row[v], acc[r][v]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int r = 0; r < R; ++r) {
    float* out = c + r * ldc;
    for (int v = 0; v < V; ++v) {
      __m512 value = _mm512_fmadd_ps(va, acc[r][v], bias ? _mm512_loadu_ps(bias + 16 * v) : _mm512_setzero_ps());
      if (beta != 0.0f) value = _mm512_fmadd_ps(vb, _mm512_loadu_ps(out + 16 * v), value);
      _mm512_storeu_ps(out + 16 * v, value);
    }
  }
}

// All `rows` rows of C, 16 V columns: 6-row tiles, then the 1-5 rows left.
template <int V>
inline void broadcast_rows(int64_t rows, Broadcast a, const float* b, int64_t ldb, int64_t depth, float* c,
                           int64_t ldc, float alpha, float beta, const float* bias) {
  int64_t r = 0;
  for (; r + kBroadcastRows <= rows; r += kBroadcastRows) {
    broadcast_tile<kBroadcastRows, V>({a.data + r * a.row_step, a.row_step, a.k_step}, b, ldb, depth, c + r * ldc,
                                      ldc, alpha, beta, bias);
  }
  const Broadcast rest{a.data + r * a.row_step, a.row_step, a.k_step};
  float* c_rest = c + r * ldc;
  switch (rows - r) {
    case 5: return broadcast_tile<5, V>(rest, b, ldb, depth, c_rest, ldc, alpha, beta, bias);
    case 4: return broadcast_tile<4, V>(rest, b, ldb, depth, c_rest, ldc, alpha, beta, bias);
    case 3: return broadcast_tile<3, V>(rest, b, ldb, depth, c_rest, ldc, alpha, beta, bias);
    case 2: return broadcast_tile<2, V>(rest, b, ldb, depth, c_rest, ldc, alpha, beta, bias);
    case 1: return broadcast_tile<1, V>(rest, b, ldb, depth, c_rest, ldc, alpha, beta, bias);
    default: return;
  }
}

// C[rows][cols] = alpha A B + bias (+ beta C), B [depth][cols] with row stride ldb, C
// with row stride ldc, cols a multiple of 16 (64 columns at a time); bias may be null.
inline void broadcast_product(int64_t rows, int64_t cols, int64_t depth, Broadcast a, const float* b, int64_t ldb,
                              float* c, int64_t ldc, float alpha, float beta = 0.0f, const float* bias = nullptr) {
  for (int64_t c0 = 0; c0 < cols; c0 += 64) {
    const float* bias_at = bias ? bias + c0 : nullptr;
    switch ((cols - c0) / 16) {
      case 1: broadcast_rows<1>(rows, a, b + c0, ldb, depth, c + c0, ldc, alpha, beta, bias_at); break;
      case 2: broadcast_rows<2>(rows, a, b + c0, ldb, depth, c + c0, ldc, alpha, beta, bias_at); break;
      case 3: broadcast_rows<3>(rows, a, b + c0, ldb, depth, c + c0, ldc, alpha, beta, bias_at); break;
      default: broadcast_rows<4>(rows, a, b + c0, ldb, depth, c + c0, ldc, alpha, beta, bias_at); break;
    }
  }
}

}  // namespace mms::cpu::simd512
