// attention_tiles.cu: attention for short sequences on tensor cores, one block per
// (batch, head), everything in shared memory.
//
// Shapes: q [B, H, Lq, D], k, v [B, H, Lk, D] (bf16 views, D contiguous) -> out
// [B, H, Lq, D], lse [B, H, Lq]. CLIP: image L = 50, text L = 77 (causal, key padding),
// D = 64; B*H = 384 blocks for the image tower at B = 32, 1024 for its 128 texts.
//
// Why a third kernel. The flash kernel (attention.cu) runs on CUDA cores in float32; the
// GEMM path hands QK^T and PV to cuBLAS's tensor cores, but around them it writes the
// [B, H, L, L] scores and probabilities to memory, runs a softmax pass over them, and
// copies every head view to and from [B, H, L, D] (eight transposes per layer, forward
// and backward). At L <= 128 one (b, h) is small enough to keep whole on chip: at
// L = 77 -> 80, D = 64, Q, K, V are 10 KB each in bf16 and the scores 27 KB in float32.
// So each block loads its Q, K, V once, straight from the projections' [B, L, H, D]
// memory, and never writes anything but the result.
//
// The tensor-core tiles. nvcuda::wmma gives a warp 16x16x16 products: a 16x16 bf16 tile
// of A times a 16x16 bf16 tile of B into a 16x16 float accumulator, the warp's 32 lanes
// each holding a slice (which slice is the hardware's business: we only load, multiply
// and store whole tiles). Shared memory rows are padded by 16 bytes so consecutive rows
// start in different banks, and every tile starts on a 32-byte boundary, as load_matrix
// requires. A transposed operand costs nothing: K^T is K's tile read as column-major.
//
// Forward, per block (8 warps, tiles dealt round-robin):
//   1. Q, K, V -> shared (bf16, rows past L zero-filled up to a multiple of 16).
//   2. S = Q K^T, tile by tile into float32 shared memory (causal: tiles wholly above
//      the diagonal are skipped; no query sees them).
//   3. One warp per row: masks, max, sum, lse = m + log(sum), P = exp(scale*S - lse),
//      rounded to bf16 as PV's operand (as the GEMM path and torch's bf16 SDPA do) and
//      written over the row of S it came from (the warp has read that row by then).
//   4. O = P V, each tile staged through the warp's 1 KB of shared memory and written
//      to out through its strides (float32 or rounded to bf16).
// Backward, per block: Q, K, V and dO -> shared, delta_i = dO_i . O_i (the softmax
// backward's row term), S again, P = exp(scale*S - lse) from the saved lse, then
//   dP = dO V^T -> dS = P * (dP - delta) (bf16, the next products' operand),
//   dQ = scale dS K,  dK = scale dS^T Q,  dV = P^T dO,
// each output tile owned by one warp: no atomics, deterministic.
//
// Floor: 4 * B*H * Lq * Lk * D FLOPs forward (QK^T and PV), 2.5x that backward; at
// B*H = 1024, L = 77, D = 64 that is 1.6 GFLOP forward: ~2 us of an H100's bf16 tensor
// peak. The bytes are Q, K, V and O once (40 KB per block, 39 MB for the texts: ~12 us at
// 3.3 TB/s), so the kernel is bound by memory and by its own latency (shared-memory
// traffic and the softmax's serial row work), not by FLOPs.
//
// Occupancy is set by shared memory. Nsight Compute on an H200 (bf16 step, B = 32):
// with P in its own array the text forward took 84 KB per block, so 2 blocks (16 warps)
// per SM, and in 56% of cycles no warp was ready to issue; P over S makes it 70 KB, 3
// blocks. The backward (110 KB, 2 blocks) keeps P twice: float32 for dS, bf16 for dV.
#include <cuda_bf16.h>
#include <mma.h>

#include <cmath>
#include <cstdint>
#include <mutex>
#include <type_traits>

#include "cuda/attention_tiles.h"
#include "cuda/check.h"
#include "cuda/device_utils.cuh"

namespace mms::cuda {

namespace {

using bf16 = __nv_bfloat16;
constexpr int kTile = 16;                     // the WMMA tile edge (m = n = k = 16)
constexpr int kTileElements = kTile * kTile;  // one warp's staging tile
constexpr int kWarps = 8;
constexpr int kThreads = kWarps * kWarpSize;
constexpr int kMaxLength = 128;
constexpr int kMaxHeadDim = 128;

// Where each array of one block lives in its dynamic shared memory (byte offsets), for
// padded lengths lq, lk (multiples of 16) and head dim d. Host (sizing the launch) and
// device (finding the arrays) compute it the same way.
struct SharedLayout {
  int lq = 0, lk = 0, d = 0;
  int ld_rows = 0;    // bf16 row stride of Q, K, V, dO: d + 8 (16 bytes of skew)
  int ld_scores = 0;  // float row stride of S (and P in float32): lk + 4
  int ld_probs = 0;   // bf16 row stride of P and dS: lk + 8 (backward); 2 * ld_scores (forward: P over S)
  int q = 0, k = 0, v = 0, grad_out = 0, scores = 0, probs = 0, grad_scores = 0, delta = 0, row_lse = 0;
  int staging = 0, bytes = 0;
};

__host__ __device__ inline int round_up(int n, int multiple) { return (n + multiple - 1) / multiple * multiple; }

__host__ __device__ inline SharedLayout shared_layout(int query_len, int key_len, int head_dim, bool backward) {
  SharedLayout s;
  s.lq = round_up(query_len, kTile);
  s.lk = round_up(key_len, kTile);
  s.d = head_dim;
  s.ld_rows = head_dim + 8;
  s.ld_scores = s.lk + 4;
  int at = 0;
  auto place = [&at](int bytes) {  // 128-byte aligned pieces
    const int offset = at;
    at += round_up(bytes, 128);
    return offset;
  };
  s.q = place(s.lq * s.ld_rows * 2);
  s.k = place(s.lk * s.ld_rows * 2);
  s.v = place(s.lk * s.ld_rows * 2);
  // The backward first stages O's rows (bf16, for delta) where S will go: room for both.
  const int score_row_bytes = s.ld_scores * 4, staged_out_row_bytes = backward ? s.ld_rows * 2 : 0;
  s.scores = place(s.lq * (score_row_bytes > staged_out_row_bytes ? score_row_bytes : staged_out_row_bytes));
  if (backward) {  // P is needed twice, in float32 (dS) and in bf16 (dV): two arrays
    s.ld_probs = s.lk + 8;
    s.probs = place(s.lq * s.ld_probs * 2);
  } else {  // each warp turns its own rows of S into bf16 P in place: row r of P starts where
            // row r of S does (a row of P is half as many bytes), so no other warp's row moves
    s.ld_probs = 2 * s.ld_scores;
    s.probs = s.scores;
  }
  s.staging = place(kWarps * kTileElements * 4);
  if (backward) {
    s.grad_out = place(s.lq * s.ld_rows * 2);
    s.grad_scores = place(s.lq * s.ld_probs * 2);
    s.delta = place(s.lq * 4);
    s.row_lse = place(s.lq * 4);
  }
  s.bytes = at;
  return s;
}

// One operand of one (b, h): its first element and the stride between its rows (tokens).
template <typename T>
struct Rows {
  T* data;
  int64_t token_stride;
};

template <typename T>
__device__ __forceinline__ Rows<T> rows_of(T* base, HeadStrides strides, int b, int h) {
  return {base + b * strides.batch + h * strides.head, strides.token};
}

// The kernels' arguments (passed by value): the problem both directions share, and
// each direction's tensors.
struct Problem {
  int heads = 0, query_len = 0, key_len = 0, head_dim = 0;
  float scale = 0.0f;
  bool causal = false;
  const uint8_t* key_keep = nullptr;
};

struct ForwardArgs {
  Problem p;
  const uint16_t *q, *k, *v;
  HeadStrides q_strides, k_strides, v_strides, out_strides;
  void* out;
  float* lse;
};

struct BackwardArgs {
  Problem p;
  const void *grad_out, *out;
  const uint16_t *q, *k, *v;
  HeadStrides grad_out_strides, out_strides, q_strides, k_strides, v_strides;
  HeadStrides grad_q_strides, grad_k_strides, grad_v_strides;
  const float* lse;
  void *grad_q, *grad_k, *grad_v;
};

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800  // bf16 WMMA: Ampere and later

__device__ __forceinline__ float load_float(const float* p) { return *p; }
__device__ __forceinline__ uint16_t load_bits(const uint16_t* p) { return *p; }
__device__ __forceinline__ uint16_t load_bits(const float* p) { return float_to_bf16_bits(*p); }
__device__ __forceinline__ void store_float(float* p, float value) { *p = value; }
__device__ __forceinline__ void store_float(uint16_t* p, float value) { *p = float_to_bf16_bits(value); }

// Whether rows of 16-bit or float elements can move 8 at a time as 16-byte words: the
// first row starts on a 16-byte boundary and every row does (token stride a multiple of
// 8 elements); columns are taken in groups of 8 from multiples of 8 (d % 16 == 0).
template <typename T>
__device__ __forceinline__ bool rows_take_vectors(Rows<T> rows) {
  return reinterpret_cast<uintptr_t>(rows.data) % 16 == 0 && rows.token_stride % 8 == 0;
}

// Copies `rows` rows of `d` elements into a [padded_rows][ld] bf16 array, zeroing the
// rows after them (so padded tiles contribute nothing to a product). bf16 sources move
// 8 elements per 16-byte access where their layout allows (the projections' head views
// do: 128-byte heads in 16-byte aligned rows); shared rows are 16-byte aligned (ld = d + 8).
template <typename T>
__device__ void load_rows(uint16_t* dst, int ld, Rows<const T> src, int rows, int padded_rows, int d) {
  if constexpr (std::is_same_v<T, uint16_t>) {
    if (rows_take_vectors(src)) {
      const int groups = d / 8;
      for (int e = threadIdx.x; e < padded_rows * groups; e += blockDim.x) {
        const int r = e / groups, c = e % groups * 8;
        const uint4 word = r < rows ? *reinterpret_cast<const uint4*>(src.data + r * src.token_stride + c)
                                    : make_uint4(0, 0, 0, 0);
        *reinterpret_cast<uint4*>(dst + r * ld + c) = word;
      }
      return;
    }
  }
  for (int e = threadIdx.x; e < padded_rows * d; e += blockDim.x) {
    const int r = e / d, c = e % d;
    dst[r * ld + c] = r < rows ? load_bits(src.data + r * src.token_stride + c) : uint16_t(0);
  }
}

// Can query i see key j of this block's batch item?
__device__ __forceinline__ bool visible(const uint8_t* keep_row, bool causal, int i, int j) {
  return !(causal && j > i) && (keep_row == nullptr || keep_row[j] != 0);
}

// 8 staged floats, times `factor`, stored at p as one 16-byte word (bf16) or two (float).
__device__ __forceinline__ uint32_t bf16_pair(float low, float high) {  // low element first in memory
  return uint32_t(float_to_bf16_bits(low)) | (uint32_t(float_to_bf16_bits(high)) << 16);
}
__device__ __forceinline__ void store_eight(uint16_t* p, const float* v, float factor) {
  *reinterpret_cast<uint4*>(p) = make_uint4(bf16_pair(v[0] * factor, v[1] * factor), bf16_pair(v[2] * factor, v[3] * factor),
                                            bf16_pair(v[4] * factor, v[5] * factor), bf16_pair(v[6] * factor, v[7] * factor));
}
__device__ __forceinline__ void store_eight(float* p, const float* v, float factor) {
  reinterpret_cast<float4*>(p)[0] = make_float4(v[0] * factor, v[1] * factor, v[2] * factor, v[3] * factor);
  reinterpret_cast<float4*>(p)[1] = make_float4(v[4] * factor, v[5] * factor, v[6] * factor, v[7] * factor);
}

// Writes a warp's staged 16x16 float tile (row-major) to rows [row0, row0 + 16) and
// columns [col0, col0 + 16) of one (b, h) output, times `factor`, skipping rows >= rows.
// Where the output's rows allow 16-byte words, each lane writes 8 consecutive elements
// (16 rows x 2 halves = the warp's 32 lanes), else one element at a time.
template <typename OutT>
__device__ void write_tile(Rows<OutT> dst, const float* staged, int row0, int col0, int rows, float factor) {
  const int lane = threadIdx.x % kWarpSize;
  if (rows_take_vectors(dst)) {
    const int r = lane / 2, c = lane % 2 * 8;
    if (row0 + r < rows) store_eight(dst.data + (row0 + r) * dst.token_stride + col0 + c, staged + r * kTile + c, factor);
    return;
  }
  for (int e = lane; e < kTileElements; e += kWarpSize) {
    const int r = row0 + e / kTile, c = col0 + e % kTile;
    if (r < rows) store_float(dst.data + r * dst.token_stride + c, staged[e] * factor);
  }
}


namespace wmma = nvcuda::wmma;
constexpr int kRowsPerLane = kMaxLength / kWarpSize;  // score-row entries per lane in the softmax
using Accumulator = wmma::fragment<wmma::accumulator, kTile, kTile, kTile, float>;

__device__ __forceinline__ const bf16* as_bf16(const uint16_t* bits) { return reinterpret_cast<const bf16*>(bits); }

// acc += sum over s < steps of A_s B_s: the 16x16 tiles A_s at a + s * a_step (leading
// dim lda, layout LayoutA) and B_s at b + s * b_step. A product's inner dimension is
// walked by stepping both tile pointers.
template <typename LayoutA, typename LayoutB>
__device__ __forceinline__ void accumulate(Accumulator& acc, const uint16_t* a, int lda, int a_step, const uint16_t* b,
                                           int ldb, int b_step, int steps) {
  wmma::fragment<wmma::matrix_a, kTile, kTile, kTile, bf16, LayoutA> tile_a;
  wmma::fragment<wmma::matrix_b, kTile, kTile, kTile, bf16, LayoutB> tile_b;
  for (int s = 0; s < steps; ++s) {
    wmma::load_matrix_sync(tile_a, as_bf16(a + s * a_step), lda);
    wmma::load_matrix_sync(tile_b, as_bf16(b + s * b_step), ldb);
    wmma::mma_sync(acc, tile_a, tile_b, acc);
  }
}

// S = Q K^T into float32 shared memory; causal: tiles with every key after every query
// are skipped (their entries stay unwritten and are never read).
__device__ void scores_tiles(const SharedLayout& s, const uint16_t* q, const uint16_t* k, float* scores, bool causal) {
  const int warp = threadIdx.x / kWarpSize, tiles_q = s.lq / kTile, tiles_k = s.lk / kTile;
  for (int t = warp; t < tiles_q * tiles_k; t += kWarps) {
    const int i = t / tiles_k, j = t % tiles_k;
    if (causal && j > i) continue;
    Accumulator acc;
    wmma::fill_fragment(acc, 0.0f);
    // K^T's tile (d, key) is K's tile read column-major.
    accumulate<wmma::row_major, wmma::col_major>(acc, q + i * kTile * s.ld_rows, s.ld_rows, kTile,
                                                 k + j * kTile * s.ld_rows, s.ld_rows, kTile, s.d / kTile);
    wmma::store_matrix_sync(scores + i * kTile * s.ld_scores + j * kTile, acc, s.ld_scores, wmma::mem_row_major);
  }
}

// Stages a warp's accumulator tile and writes it out (see write_tile).
template <typename OutT>
__device__ void store_tile(const Accumulator& acc, float* staging, Rows<OutT> dst, int row0, int col0, int rows,
                           float factor) {
  wmma::store_matrix_sync(staging, acc, kTile, wmma::mem_row_major);
  __syncwarp();
  write_tile(dst, staging, row0, col0, rows, factor);
  __syncwarp();  // before the staging tile is reused
}

// What every block of either direction starts with: which (batch, head) it owns, its
// key-mask row, its shared arrays, and Q, K, V loaded into them (no barrier yet).
struct Block {
  SharedLayout s;
  int b, h, warp, lane;
  const uint8_t* keep_row;
  uint16_t *q, *k, *v, *probs;
  float *scores, *staging;  // staging: this warp's 16x16 tile
};

template <typename Args>
__device__ Block open_block(unsigned char* shared, const Args& a, bool backward) {
  Block blk;
  blk.s = shared_layout(a.p.query_len, a.p.key_len, a.p.head_dim, backward);
  const SharedLayout& s = blk.s;
  blk.b = blockIdx.x / a.p.heads, blk.h = blockIdx.x % a.p.heads;
  blk.warp = threadIdx.x / kWarpSize, blk.lane = threadIdx.x % kWarpSize;
  blk.keep_row = a.p.key_keep ? a.p.key_keep + int64_t(blk.b) * a.p.key_len : nullptr;
  blk.q = reinterpret_cast<uint16_t*>(shared + s.q);
  blk.k = reinterpret_cast<uint16_t*>(shared + s.k);
  blk.v = reinterpret_cast<uint16_t*>(shared + s.v);
  blk.probs = reinterpret_cast<uint16_t*>(shared + s.probs);
  blk.scores = reinterpret_cast<float*>(shared + s.scores);
  blk.staging = reinterpret_cast<float*>(shared + s.staging) + blk.warp * kTileElements;
  load_rows(blk.q, s.ld_rows, rows_of(a.q, a.q_strides, blk.b, blk.h), a.p.query_len, s.lq, s.d);
  load_rows(blk.k, s.ld_rows, rows_of(a.k, a.k_strides, blk.b, blk.h), a.p.key_len, s.lk, s.d);
  load_rows(blk.v, s.ld_rows, rows_of(a.v, a.v_strides, blk.b, blk.h), a.p.key_len, s.lk, s.d);
  return blk;
}

template <typename OutT>
__global__ void __launch_bounds__(kThreads) tiles_forward_kernel(ForwardArgs a) {
  extern __shared__ __align__(128) unsigned char shared[];
  // 1. Q, K, V into shared memory.
  const Block blk = open_block(shared, a, /*backward=*/false);
  const SharedLayout& s = blk.s;
  const int b = blk.b, h = blk.h, warp = blk.warp, lane = blk.lane;
  const uint8_t* keep_row = blk.keep_row;
  const uint16_t *q = blk.q, *k = blk.k, *v = blk.v;
  uint16_t* probs = blk.probs;
  float *scores = blk.scores, *staging = blk.staging;
  __syncthreads();
  // 2. S = Q K^T.
  scores_tiles(s, q, k, scores, a.p.causal);
  __syncthreads();
  // 3. The masked softmax, one warp per row; padded rows get P = 0.
  for (int r = warp; r < s.lq; r += kWarps) {
    float x[kRowsPerLane];
    float row_max = -INFINITY;
#pragma unroll
    for (int u = 0; u < kRowsPerLane; ++u) {
      const int j = lane + u * kWarpSize;
      const bool seen = r < a.p.query_len && j < a.p.key_len && visible(keep_row, a.p.causal, r, j);
      x[u] = seen ? scores[r * s.ld_scores + j] * a.p.scale : -INFINITY;
      row_max = fmaxf(row_max, x[u]);
    }
    row_max = warp_max(row_max);
    float sum = 0.0f;
#pragma unroll
    for (int u = 0; u < kRowsPerLane; ++u) sum += x[u] == -INFINITY ? 0.0f : expf(x[u] - row_max);
    sum = warp_sum(sum);
    const float row_lse = sum > 0.0f ? row_max + logf(sum) : -INFINITY;  // no visible key: -inf, P = 0
#pragma unroll
    for (int u = 0; u < kRowsPerLane; ++u) {
      const int j = lane + u * kWarpSize;
      if (j < s.lk) probs[r * s.ld_probs + j] = float_to_bf16_bits(x[u] == -INFINITY ? 0.0f : expf(x[u] - row_lse));
    }
    if (lane == 0 && r < a.p.query_len)
      a.lse[(int64_t(b) * a.p.heads + h) * a.p.query_len + r] = row_lse;
  }
  __syncthreads();
  // 4. O = P V; causal: key tiles after the query tile hold only zero probabilities.
  const Rows<OutT> out = rows_of(static_cast<OutT*>(a.out), a.out_strides, b, h);
  const int tiles_d = s.d / kTile, tiles_k = s.lk / kTile;
  for (int t = warp; t < (s.lq / kTile) * tiles_d; t += kWarps) {
    const int i = t / tiles_d, j = t % tiles_d;
    Accumulator acc;
    wmma::fill_fragment(acc, 0.0f);
    accumulate<wmma::row_major, wmma::row_major>(acc, probs + i * kTile * s.ld_probs, s.ld_probs, kTile,
                                                 v + j * kTile, s.ld_rows, kTile * s.ld_rows,
                                                 a.p.causal ? min(tiles_k, i + 1) : tiles_k);
    store_tile(acc, staging, out, i * kTile, j * kTile, a.p.query_len, 1.0f);
  }
}

template <typename OutT>
__global__ void __launch_bounds__(kThreads) tiles_backward_kernel(BackwardArgs a) {
  extern __shared__ __align__(128) unsigned char shared[];
  const Block blk = open_block(shared, a, /*backward=*/true);
  const SharedLayout& s = blk.s;
  const int b = blk.b, h = blk.h, warp = blk.warp, lane = blk.lane;
  const uint8_t* keep_row = blk.keep_row;
  const uint16_t *q = blk.q, *k = blk.k, *v = blk.v;
  uint16_t* probs = blk.probs;
  float *scores = blk.scores, *staging = blk.staging;  // scores: S, then P in float32
  uint16_t* grad_out = reinterpret_cast<uint16_t*>(shared + s.grad_out);
  uint16_t* grad_scores = reinterpret_cast<uint16_t*>(shared + s.grad_scores);
  float* delta = reinterpret_cast<float*>(shared + s.delta);
  float* row_lse = reinterpret_cast<float*>(shared + s.row_lse);
  const Rows<const OutT> dout = rows_of(static_cast<const OutT*>(a.grad_out), a.grad_out_strides, b, h);
  const Rows<const OutT> out = rows_of(static_cast<const OutT*>(a.out), a.out_strides, b, h);
  load_rows(grad_out, s.ld_rows, dout, a.p.query_len, s.lq, s.d);
  // delta_i = dO_i . O_i (= sum_j P_ij dP_ij), in float32 from the stored values. bf16
  // outputs: O's rows are staged in S's space with the same 16-byte loads as Q, K, V, all
  // issued at once, and the dot products read shared memory (Nsight Compute had the
  // backward waiting on global loads in 37% of its cycles when each warp read its rows'
  // dO and O from memory, two bytes per lane, a row at a time). float32 outputs are read
  // from memory as they are: staging them in bf16 would round them.
  constexpr bool stage_out = std::is_same_v<OutT, uint16_t>;
  const uint16_t* staged_out = reinterpret_cast<const uint16_t*>(scores);
  if constexpr (stage_out) {
    load_rows(reinterpret_cast<uint16_t*>(scores), s.ld_rows, out, a.p.query_len, s.lq, s.d);
    __syncthreads();
  }
  for (int r = warp; r < s.lq; r += kWarps) {
    float dot = 0.0f;
    if (r < a.p.query_len)
      for (int c = lane; c < s.d; c += kWarpSize) {
        if constexpr (stage_out)
          dot += bf16_bits_to_float(grad_out[r * s.ld_rows + c]) * bf16_bits_to_float(staged_out[r * s.ld_rows + c]);
        else
          dot += load_float(dout.data + r * dout.token_stride + c) * load_float(out.data + r * out.token_stride + c);
      }
    dot = warp_sum(dot);
    if (lane == 0) {
      delta[r] = dot;
      row_lse[r] = r < a.p.query_len ? a.lse[(int64_t(b) * a.p.heads + h) * a.p.query_len + r] : -INFINITY;
    }
  }
  __syncthreads();
  scores_tiles(s, q, k, scores, a.p.causal);
  __syncthreads();
  // P = exp(scale * S - lse) where visible, else 0 (also for a row with lse = -inf).
  for (int e = threadIdx.x; e < s.lq * s.lk; e += kThreads) {
    const int r = e / s.lk, j = e % s.lk;
    const float lse_r = row_lse[r];
    const bool seen = r < a.p.query_len && j < a.p.key_len && lse_r != -INFINITY && visible(keep_row, a.p.causal, r, j);
    const float p = seen ? expf(scores[r * s.ld_scores + j] * a.p.scale - lse_r) : 0.0f;
    scores[r * s.ld_scores + j] = p;
    probs[r * s.ld_probs + j] = float_to_bf16_bits(p);
  }
  __syncthreads();
  // dS = P * (dP - delta) with dP = dO V^T, tile by tile (V^T's tile is V's read
  // column-major); causal tiles after the diagonal have P = 0, so dS = 0 without a product.
  const int tiles_q = s.lq / kTile, tiles_k = s.lk / kTile, tiles_d = s.d / kTile;
  for (int t = warp; t < tiles_q * tiles_k; t += kWarps) {
    const int i = t / tiles_k, j = t % tiles_k;
    Accumulator acc;
    wmma::fill_fragment(acc, 0.0f);
    if (!(a.p.causal && j > i))
      accumulate<wmma::row_major, wmma::col_major>(acc, grad_out + i * kTile * s.ld_rows, s.ld_rows, kTile,
                                                   v + j * kTile * s.ld_rows, s.ld_rows, kTile, tiles_d);
    wmma::store_matrix_sync(staging, acc, kTile, wmma::mem_row_major);
    __syncwarp();
    for (int e = lane; e < kTileElements; e += kWarpSize) {
      const int r = i * kTile + e / kTile, c = j * kTile + e % kTile;
      grad_scores[r * s.ld_probs + c] = float_to_bf16_bits(scores[r * s.ld_scores + c] * (staging[e] - delta[r]));
    }
    __syncwarp();
  }
  __syncthreads();
  // The three gradients, every output tile owned by one warp. Causal: query tile i sees
  // key tiles 0..i only, so dQ stops at i and dK, dV start at query tile i.
  const Rows<OutT> grad_q = rows_of(static_cast<OutT*>(a.grad_q), a.grad_q_strides, b, h);
  const Rows<OutT> grad_k = rows_of(static_cast<OutT*>(a.grad_k), a.grad_k_strides, b, h);
  const Rows<OutT> grad_v = rows_of(static_cast<OutT*>(a.grad_v), a.grad_v_strides, b, h);
  const int q_tiles = tiles_q * tiles_d, kv_tiles = tiles_k * tiles_d;
  for (int t = warp; t < q_tiles + 2 * kv_tiles; t += kWarps) {
    Accumulator acc;
    wmma::fill_fragment(acc, 0.0f);
    if (t < q_tiles) {  // dQ = scale dS K
      const int i = t / tiles_d, j = t % tiles_d;
      accumulate<wmma::row_major, wmma::row_major>(acc, grad_scores + i * kTile * s.ld_probs, s.ld_probs, kTile,
                                                   k + j * kTile, s.ld_rows, kTile * s.ld_rows,
                                                   a.p.causal ? min(tiles_k, i + 1) : tiles_k);
      store_tile(acc, staging, grad_q, i * kTile, j * kTile, a.p.query_len, a.p.scale);
      continue;
    }
    const bool is_k = t < q_tiles + kv_tiles;
    const int u = t - q_tiles - (is_k ? 0 : kv_tiles);
    const int i = u / tiles_d, j = u % tiles_d;  // key tile, head-dim tile
    const int first = a.p.causal ? i : 0;          // the first query tile that sees key tile i
    // dK = scale dS^T Q, dV = P^T dO: the transposed tile (key, query) of dS or P is its
    // (query, key) tile read column-major.
    const uint16_t* left = is_k ? grad_scores : probs;
    const uint16_t* right = is_k ? q : grad_out;
    accumulate<wmma::col_major, wmma::row_major>(acc, left + first * kTile * s.ld_probs + i * kTile, s.ld_probs,
                                                 kTile * s.ld_probs, right + first * kTile * s.ld_rows + j * kTile,
                                                 s.ld_rows, kTile * s.ld_rows, max(0, tiles_q - first));
    store_tile(acc, staging, is_k ? grad_k : grad_v, i * kTile, j * kTile, a.p.key_len, is_k ? a.p.scale : 1.0f);
  }
}

#else  // before sm_80: no bf16 tensor cores; attention_tiles_supported() says no first

template <typename OutT>
__global__ void tiles_forward_kernel(ForwardArgs) { __trap(); }
template <typename OutT>
__global__ void tiles_backward_kernel(BackwardArgs) { __trap(); }

#endif

// The current device's shared-memory limit per block (opt-in) and whether it has bf16
// tensor cores, read once per device.
struct DeviceLimits {
  int shared_bytes = 0;
  bool tensor_cores = false;
};

DeviceLimits device_limits() {
  constexpr int kMaxDevices = 64;
  static DeviceLimits cached[kMaxDevices];
  static bool known[kMaxDevices] = {};
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  int device = 0;
  MMS_CUDA_CHECK(cudaGetDevice(&device));
  if (device < 0 || device >= kMaxDevices) return {};
  if (!known[device]) {
    int shared = 0, major = 0;
    MMS_CUDA_CHECK(cudaDeviceGetAttribute(&shared, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    MMS_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    cached[device] = {shared, major >= 8};
    known[device] = true;
  }
  return cached[device];
}

// Lets `kernel` take `bytes` of dynamic shared memory (above the default 48 KB), and asks
// for the SM's largest shared-memory carve-out (L1 gets the rest), so that as many blocks
// fit on an SM as their shared memory allows: the kernels keep everything in shared memory.
template <typename Kernel>
void allow_shared(Kernel kernel, int bytes) {
  MMS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  MMS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                      int(cudaSharedmemCarveoutMaxShared)));
}

void require_supported(const AttentionShape& shape) {
  MMS_CUDA_REQUIRE(attention_tiles_supported(shape.query_len, shape.key_len, shape.head_dim),
                   "attention_tiles: this shape (lengths up to 128, head_dim a multiple of 16 up to 128) or device "
                   "(sm_80+, enough shared memory) is not supported");
  MMS_CUDA_REQUIRE(shape.batch * shape.heads < int64_t(1) << 31, "attention_tiles: too many (batch, head) pairs");
}

Problem problem_of(const AttentionShape& shape, const uint8_t* key_keep, bool causal, float scale) {
  Problem p;
  p.heads = int(shape.heads), p.query_len = int(shape.query_len), p.key_len = int(shape.key_len);
  p.head_dim = int(shape.head_dim);
  p.scale = scale;
  p.causal = causal;
  p.key_keep = key_keep;
  return p;
}

// One block per (batch, head), with the shared memory the direction's layout needs; the
// kernel instance writes float32 or bf16 outputs. Nothing to do for no (batch, head) or
// no query.
template <typename Args>
void launch(void (*float_kernel)(Args), void (*bf16_kernel)(Args), const Args& args, const AttentionShape& shape,
            bool backward, bool out_bf16, cudaStream_t stream) {
  if (shape.batch * shape.heads == 0 || shape.query_len == 0) return;
  require_supported(shape);
  const int bytes = shared_layout(args.p.query_len, args.p.key_len, args.p.head_dim, backward).bytes;
  void (*kernel)(Args) = out_bf16 ? bf16_kernel : float_kernel;
  allow_shared(kernel, bytes);
  kernel<<<unsigned(shape.batch * shape.heads), kThreads, bytes, stream>>>(args);
  MMS_CUDA_LAUNCH_CHECK();
}

}  // namespace

bool attention_tiles_supported(int64_t query_len, int64_t key_len, int64_t head_dim) {
  if (head_dim <= 0 || head_dim % kTile != 0 || head_dim > kMaxHeadDim) return false;
  if (query_len < 1 || key_len < 1 || query_len > kMaxLength || key_len > kMaxLength) return false;
  const DeviceLimits limits = device_limits();
  return limits.tensor_cores &&
         shared_layout(int(query_len), int(key_len), int(head_dim), true).bytes <= limits.shared_bytes;
}

void attention_tiles_forward(const uint16_t* q, HeadStrides q_strides, const uint16_t* k, HeadStrides k_strides,
                             const uint16_t* v, HeadStrides v_strides, const uint8_t* key_keep, bool causal,
                             float scale, void* out, HeadStrides out_strides, bool out_bf16, float* lse,
                             const AttentionShape& shape, cudaStream_t stream) {
  ForwardArgs args;
  args.p = problem_of(shape, key_keep, causal, scale);
  args.q = q, args.k = k, args.v = v;
  args.q_strides = q_strides, args.k_strides = k_strides, args.v_strides = v_strides;
  args.out = out, args.out_strides = out_strides;
  args.lse = lse;
  launch(tiles_forward_kernel<float>, tiles_forward_kernel<uint16_t>, args, shape, false, out_bf16, stream);
}

void attention_tiles_backward(const void* grad_out, HeadStrides grad_out_strides, const void* out,
                              HeadStrides out_strides, const uint16_t* q, HeadStrides q_strides, const uint16_t* k,
                              HeadStrides k_strides, const uint16_t* v, HeadStrides v_strides, const float* lse,
                              const uint8_t* key_keep, bool causal, float scale, void* grad_q,
                              HeadStrides grad_q_strides, void* grad_k, HeadStrides grad_k_strides, void* grad_v,
                              HeadStrides grad_v_strides, bool out_bf16, const AttentionShape& shape,
                              cudaStream_t stream) {
  BackwardArgs args;
  args.p = problem_of(shape, key_keep, causal, scale);
  args.grad_out = grad_out, args.grad_out_strides = grad_out_strides;
  args.out = out, args.out_strides = out_strides;
  args.q = q, args.k = k, args.v = v;
  args.q_strides = q_strides, args.k_strides = k_strides, args.v_strides = v_strides;
  args.lse = lse;
  args.grad_q = grad_q, args.grad_k = grad_k, args.grad_v = grad_v;
  args.grad_q_strides = grad_q_strides, args.grad_k_strides = grad_k_strides, args.grad_v_strides = grad_v_strides;
  launch(tiles_backward_kernel<float>, tiles_backward_kernel<uint16_t>, args, shape, true, out_bf16, stream);
}

}  // namespace mms::cuda
