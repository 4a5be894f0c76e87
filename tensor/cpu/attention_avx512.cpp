// One attention head, float32, AVX-512: the kernels behind attention_kernel.h.
//
// Every product of a head is simd512.h's broadcast product, "broadcast one scalar of A,
// multiply a row of B":
//
//   C[r][0:n] = alpha * sum_k A(r, k) * B[k][0:n]        (n a multiple of 16)
//
// For O = P V, dQ = dS K, dK = dS^T Q and dV = P^T dO the rows of B are the rows of a
// head (head_dim = 16 floats is one register), and A is P or dS read along rows or down
// columns. For the scores S = Q K^T and dP = dO V^T, K and V are first transposed into
// [head_dim][keys padded to 16] (16 x 16 blocks through registers), and then the same
// product runs with B = K^T.
//
// Forward, per head:  K^T;  S = scale Q K^T;  P = masked softmax of S's rows (lse kept);
//                     O = P V.
// Backward, per head: K^T, V^T;  P recomputed;  dP = dO V^T;  D_i = dO_i . O_i;
//                     dS = P * (dP - D);  dV = P^T dO;  dQ = scale dS K;  dK = scale dS^T Q.
// Hidden keys (masked by key_keep, causal, or past the last key in the padding) get
// P = 0 exactly, so they contribute nothing to O, dV, dQ or dK.
//
// Like sgemm_avx512.cpp this file uses no inline library template (no std::min, no
// std::vector): nothing compiled here with AVX-512 can stand in for shared code.
#include "tensor/cpu/attention_kernel.h"

#if defined(__AVX512F__) && defined(__AVX512DQ__)
#include <immintrin.h>

#include <cmath>

#include "tensor/cpu/simd512.h"

namespace mms::cpu::attention_avx512 {

namespace {

using simd512::broadcast_product;
using simd512::first_lanes;

constexpr int64_t kLanes = 16;
constexpr int64_t kMaxKeys = 1024;
constexpr int64_t kMaxHeadDim = 256;

int64_t padded(int64_t n) { return (n + kLanes - 1) / kLanes * kLanes; }
int64_t smaller(int64_t x, int64_t y) { return x < y ? x : y; }

// exp(x) for the softmax's x = s - max <= 0, 16 at a time (Cephes' expf): x = n ln2 + r
// with |r| <= ln2 / 2 (ln2 split in two so n ln2 is exact to float precision), exp(r) by
// a degree-7 polynomial, and 2^n applied by vscalefps, which is exact and goes through
// the subnormals to 0. Within 2 ulp of expf. x is clamped at -104, where the result
// rounds to exactly 0 (so does -inf), so that n stays finite; the clamp's operand order
// lets a NaN through (max returns its second operand when either is NaN), as expf would.
inline __m512 exp_ps(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));  // 1 + r + r^2 p(r)
  return _mm512_scalef_ps(p, n);
}

// bits[c] lane l set when key 16 c + l exists and key_keep keeps it.
void visible_key_bits(const HeadShape& h, uint16_t* bits) {
  for (int64_t c = 0; c < padded(h.keys) / kLanes; ++c) {
    unsigned mask = 0;
    for (int64_t l = 0; l < kLanes && c * kLanes + l < h.keys; ++l)
      if (h.keep[c * kLanes + l] != 0) mask |= 1u << l;
    bits[c] = static_cast<uint16_t>(mask);
  }
}

// The rows of S [queries][width] become P in place: exp(s - max) over the visible keys,
// summed in double, divided by the sum; every hidden entry an exact 0. lse (may be null)
// gets max + log(sum), or -inf for a row with no visible key (then all of P's row is 0).
void softmax_rows(float* s, int64_t width, const HeadShape& h, const uint16_t* bits, double* lse) {
  for (int64_t i = 0; i < h.queries; ++i) {
    float* row = s + i * width;
    const int64_t visible = h.causal ? smaller(i + 1, h.keys) : h.keys;
    // The max skips NaN scores (max returns its second operand, top, when one is NaN),
    // as the Eigen path's `>` does; their exp is NaN, so a NaN score still makes the row NaN.
    __m512 top = _mm512_set1_ps(-INFINITY);
    for (int64_t j0 = 0; j0 < width; j0 += kLanes) {
      const __mmask16 shown = bits[j0 / kLanes] & first_lanes(visible - j0);
      top = _mm512_mask_max_ps(top, shown, _mm512_loadu_ps(row + j0), top);
    }
    const float row_max = _mm512_reduce_max_ps(top);
    if (row_max == -INFINITY) {
      for (int64_t j0 = 0; j0 < width; j0 += kLanes) _mm512_storeu_ps(row + j0, _mm512_setzero_ps());
      if (lse) lse[i] = -INFINITY;
      continue;
    }
    const __m512 shift = _mm512_set1_ps(row_max);
    __m512d total = _mm512_setzero_pd();
    for (int64_t j0 = 0; j0 < width; j0 += kLanes) {
      const __mmask16 shown = bits[j0 / kLanes] & first_lanes(visible - j0);
      const __m512 p = _mm512_maskz_mov_ps(shown, exp_ps(_mm512_sub_ps(_mm512_loadu_ps(row + j0), shift)));
      _mm512_storeu_ps(row + j0, p);
      total = _mm512_add_pd(total, _mm512_cvtps_pd(_mm512_castps512_ps256(p)));
      total = _mm512_add_pd(total, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(p), 1))));
    }
    const double sum = _mm512_reduce_add_pd(total);
    const __m512 inverse = _mm512_set1_ps(static_cast<float>(1.0 / sum));
    for (int64_t j0 = 0; j0 < width; j0 += kLanes)
      _mm512_storeu_ps(row + j0, _mm512_mul_ps(_mm512_loadu_ps(row + j0), inverse));
    if (lse) lse[i] = static_cast<double>(row_max) + std::log(sum);
  }
}

// dot(a, b) over `dim` floats (a multiple of 16).
float dot(const float* a, const float* b, int64_t dim) {
  __m512 acc = _mm512_setzero_ps();
  for (int64_t d = 0; d < dim; d += kLanes) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + d), _mm512_loadu_ps(b + d), acc);
  return _mm512_reduce_add_ps(acc);
}

}  // namespace

bool compiled() { return true; }

bool takes(int64_t head_dim, int64_t keys) {
  return head_dim > 0 && head_dim % kLanes == 0 && head_dim <= kMaxHeadDim && keys <= kMaxKeys;
}

int64_t scratch_floats(int64_t queries, int64_t keys, int64_t head_dim) {
  return 2 * (head_dim + queries) * padded(keys);
}

void forward(const HeadShape& h, ConstRows q, ConstRows k, ConstRows v, Rows out, double* lse, float* scratch) {
  const int64_t width = padded(h.keys), dim = h.head_dim;
  uint16_t bits[kMaxKeys / kLanes];
  visible_key_bits(h, bits);
  float* kt = scratch;               // [dim][width]
  float* s = scratch + dim * width;  // [queries][width]: S, then P
  simd512::transpose_padded(k.data, k.stride, h.keys, dim, kt, width);
  broadcast_product(h.queries, width, dim, {q.data, q.stride, 1}, kt, width, s, width, h.scale);
  softmax_rows(s, width, h, bits, lse);
  broadcast_product(h.queries, dim, h.keys, {s, width, 1}, v.data, v.stride, out.data, out.stride, 1.0f);
}

void backward(const HeadShape& h, ConstRows grad_out, ConstRows q, ConstRows k, ConstRows v, ConstRows out,
              Rows grad_q, Rows grad_k, Rows grad_v, float* scratch) {
  const int64_t width = padded(h.keys), dim = h.head_dim;
  uint16_t bits[kMaxKeys / kLanes];
  visible_key_bits(h, bits);
  float* kt = scratch;                   // [dim][width]
  float* vt = kt + dim * width;          // [dim][width]
  float* p = vt + dim * width;           // [queries][width]
  float* ds = p + h.queries * width;     // [queries][width]: dP, then dS
  simd512::transpose_padded(k.data, k.stride, h.keys, dim, kt, width);
  simd512::transpose_padded(v.data, v.stride, h.keys, dim, vt, width);
  broadcast_product(h.queries, width, dim, {q.data, q.stride, 1}, kt, width, p, width, h.scale);
  softmax_rows(p, width, h, bits, nullptr);
  broadcast_product(h.queries, width, dim, {grad_out.data, grad_out.stride, 1}, vt, width, ds, width, 1.0f);
  for (int64_t i = 0; i < h.queries; ++i) {
    // dS = P * (dP - D_i), D_i = dO_i . O_i; P's zeros keep hidden entries at 0
    const __m512 row_dot = _mm512_set1_ps(dot(grad_out.data + i * grad_out.stride, out.data + i * out.stride, dim));
    for (int64_t j0 = 0; j0 < width; j0 += kLanes) {
      float* at = ds + i * width + j0;
      _mm512_storeu_ps(at, _mm512_mul_ps(_mm512_loadu_ps(p + i * width + j0), _mm512_sub_ps(_mm512_loadu_ps(at), row_dot)));
    }
  }
  // dV = P^T dO: A(j, i) = P[i][j]
  broadcast_product(h.keys, dim, h.queries, {p, 1, width}, grad_out.data, grad_out.stride, grad_v.data, grad_v.stride,
                    1.0f);
  // dQ = scale dS K
  broadcast_product(h.queries, dim, h.keys, {ds, width, 1}, k.data, k.stride, grad_q.data, grad_q.stride, h.scale);
  // dK = scale dS^T Q: A(j, i) = dS[i][j]
  broadcast_product(h.keys, dim, h.queries, {ds, 1, width}, q.data, q.stride, grad_k.data, grad_k.stride, h.scale);
}

}  // namespace mms::cpu::attention_avx512

#else

#include <cstdlib>

namespace mms::cpu::attention_avx512 {
bool compiled() { return false; }
bool takes(int64_t, int64_t) { return false; }
int64_t scratch_floats(int64_t, int64_t, int64_t) { return 0; }
// Never called: the caller checks compiled() first.
void forward(const HeadShape&, ConstRows, ConstRows, ConstRows, Rows, double*, float*) { std::abort(); }
void backward(const HeadShape&, ConstRows, ConstRows, ConstRows, ConstRows, ConstRows, Rows, Rows,
              Rows, float*) {
  std::abort();
}
}  // namespace mms::cpu::attention_avx512

#endif
