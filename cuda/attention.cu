// attention.cu: scaled dot-product attention, naive and flash-style (fused, online softmax).
//
// Shapes: q [B, H, Lq, D], k, v [B, H, Lk, D] -> out [B, H, Lq, D], lse [B, H, Lq].
// ViT-B/32: B*H = 8*12, L = 50, D = 64. Text tower: B*H = 128*8, L = 77, D = 64, causal,
// key padding.
//
// Naive (the reference): one block per query row computes all Lk scores into shared
// memory, takes an exact softmax with block reductions, then each thread produces some
// output dims as sum_j p_j v_j. Simple, obviously right, and it re-reads K and V once per
// query: O(Lq * Lk * D) global loads.
//
// Flash (what changed: K/V read once per block of 64 queries, no score matrix): each
// block owns 64 queries of one (b, h); each thread owns one query with q, the output
// accumulator and the running max m and sum l in registers. Tiles of 32 keys and values
// stream through shared memory (every thread reads the same K row: a broadcast, no bank
// conflicts). Per tile: scores s_t, new max m' = max(m, max_t s_t), rescale acc and l by
// exp(m - m'), add exp(s_t - m') and exp(s_t - m') v_t. At the end out = acc / l,
// lse = m + log l. Causal blocks stop at the tile past their last query.
// Backward recomputes P = exp(s - lse) tile by tile: dQ with query-owning threads, dK and
// dV with key-owning threads (streaming query tiles), so no atomics are needed.
//
// Floor: 4 * B*H * Lq * Lk * D FLOPs forward (QK^T and PV), 2.5x that backward. ViT-B/32
// at batch 8 is 4 * 96 * 50 * 50 * 64 = 61 MFLOP: microseconds at FP32 CUDA-core peak
// (~60 TFLOP/s on H100), so at CLIP's short sequences the kernels are latency bound and
// the win over naive is in memory traffic, not FLOPs.
//
// Also here: key_prefix_lengths, the per-list key lengths that cuDNN's fused attention
// takes in place of a key mask (cuda/cudnn_attention.h).
#include <cmath>

#include "cuda/attention.h"
#include "cuda/check.h"
#include "cuda/device_utils.cuh"
#include "cuda/memory.h"

namespace mms::cuda {

namespace {

constexpr int kQueriesPerBlock = 64;  // threads per flash block, one query (or key) each
constexpr int kKeysPerTile = 32;
constexpr int kNaiveThreads = 128;

// Can query i see key j of batch item b?
__device__ __forceinline__ bool visible(const uint8_t* key_keep, int64_t b, int64_t key_len,
                                        bool causal, int64_t i, int64_t j) {
  if (causal && j > i) return false;
  return key_keep == nullptr || key_keep[b * key_len + j] != 0;
}

// Loads rows [first, first + count) of a [len, head_dim] matrix into a [tile][kMaxD]
// shared array, zero-padding missing rows and dims so dot products need no branches.
template <int kMaxD, int kTileRows>
__device__ __forceinline__ void load_tile(float (*tile)[kMaxD], const float* matrix, int64_t first,
                                          int64_t len, int64_t head_dim) {
  for (int e = threadIdx.x; e < kTileRows * kMaxD; e += blockDim.x) {
    const int row = e / kMaxD, d = e % kMaxD;
    const int64_t source_row = first + row;
    tile[row][d] = (source_row < len && d < head_dim) ? matrix[source_row * head_dim + d] : 0.0f;
  }
}

template <int kMaxD>
__device__ __forceinline__ void load_row(float* registers, const float* row, int64_t head_dim) {
#pragma unroll
  for (int d = 0; d < kMaxD; ++d) registers[d] = d < head_dim ? row[d] : 0.0f;
}

template <int kMaxD>
__device__ __forceinline__ float dot_row(const float* registers, const float* shared_row) {
  float acc = 0.0f;
#pragma unroll
  for (int d = 0; d < kMaxD; ++d) acc += registers[d] * shared_row[d];
  return acc;
}

// ---- flash forward -------------------------------------------------------------------
template <int kMaxD>
__global__ void __launch_bounds__(kQueriesPerBlock)
flash_forward_kernel(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                     const uint8_t* __restrict__ key_keep, bool causal, float scale,
                     float* __restrict__ out, float* __restrict__ lse, AttentionShape shape,
                     int64_t query_blocks) {
  __shared__ float k_tile[kKeysPerTile][kMaxD];
  __shared__ float v_tile[kKeysPerTile][kMaxD];
  // Each thread's scores for the current tile, [key][thread] so a warp hits 32 banks.
  __shared__ float s_tile[kKeysPerTile][kQueriesPerBlock];
  const int64_t bh = blockIdx.x / query_blocks;  // (b, h) flattened
  const int64_t b = bh / shape.heads;
  const int64_t first_query = (blockIdx.x % query_blocks) * kQueriesPerBlock;
  const int64_t i = first_query + threadIdx.x;
  const int64_t D = shape.head_dim, Lq = shape.query_len, Lk = shape.key_len;
  const bool active = i < Lq;
  const float* k_bh = k + bh * Lk * D;
  const float* v_bh = v + bh * Lk * D;

  float q_row[kMaxD], acc[kMaxD];
  if (active) load_row<kMaxD>(q_row, q + (bh * Lq + i) * D, D);
#pragma unroll
  for (int d = 0; d < kMaxD; ++d) acc[d] = 0.0f;
  float m = -INFINITY, l = 0.0f;

  // With a causal mask no query of this block sees keys past its last query.
  const int64_t last_query = min(Lq, first_query + kQueriesPerBlock) - 1;
  const int64_t key_end = causal ? min(Lk, last_query + 1) : Lk;
  for (int64_t j0 = 0; j0 < key_end; j0 += kKeysPerTile) {
    __syncthreads();  // the previous tile is no longer read
    load_tile<kMaxD, kKeysPerTile>(k_tile, k_bh, j0, Lk, D);
    load_tile<kMaxD, kKeysPerTile>(v_tile, v_bh, j0, Lk, D);
    __syncthreads();
    if (!active) continue;
    float* s = &s_tile[0][threadIdx.x];  // s[t * kQueriesPerBlock] = score of key j0 + t
    float tile_max = -INFINITY;
    // Only the dims are unrolled (acc and q live in registers); unrolling keys too
    // would multiply code size (and compile time) by 32 for no measurable gain.
#pragma unroll 1
    for (int t = 0; t < kKeysPerTile; ++t) {
      const int64_t j = j0 + t;
      const float score = (j < Lk && visible(key_keep, b, Lk, causal, i, j))
                              ? scale * dot_row<kMaxD>(q_row, k_tile[t])
                              : -INFINITY;
      s[t * kQueriesPerBlock] = score;
      tile_max = fmaxf(tile_max, score);
    }
    if (tile_max == -INFINITY) continue;  // nothing visible in this tile
    const float new_m = fmaxf(m, tile_max);
    const float correction = expf(m - new_m);  // 0 when m = -inf
    l *= correction;
#pragma unroll
    for (int d = 0; d < kMaxD; ++d) acc[d] *= correction;
#pragma unroll 1
    for (int t = 0; t < kKeysPerTile; ++t) {
      const float p = expf(s[t * kQueriesPerBlock] - new_m);  // 0 for masked keys
      l += p;
#pragma unroll
      for (int d = 0; d < kMaxD; ++d) acc[d] += p * v_tile[t][d];
    }
    m = new_m;
  }
  if (!active) return;
  float* out_row = out + (bh * Lq + i) * D;
  const float inverse = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
  for (int d = 0; d < kMaxD; ++d)
    if (d < D) out_row[d] = acc[d] * inverse;
  lse[bh * Lq + i] = l > 0.0f ? m + logf(l) : -INFINITY;
}

// ---- flash backward --------------------------------------------------------------------
// delta[i] = sum_d dO[i, d] * O[i, d], a warp per row.
__global__ void attention_delta_kernel(const float* __restrict__ grad_out, const float* __restrict__ out,
                                       float* __restrict__ delta, int64_t rows, int64_t head_dim) {
  const int64_t row = blockIdx.x * int64_t(blockDim.x / kWarpSize) + threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= rows) return;
  float acc = 0.0f;
  for (int64_t d = lane; d < head_dim; d += kWarpSize) acc += grad_out[row * head_dim + d] * out[row * head_dim + d];
  acc = warp_sum(acc);
  if (lane == 0) delta[row] = acc;
}

// dQ_i = scale * sum_j P_ij (dO_i . V_j - delta_i) K_j; one thread per query.
template <int kMaxD>
__global__ void __launch_bounds__(kQueriesPerBlock)
flash_backward_dq_kernel(const float* __restrict__ grad_out, const float* __restrict__ q,
                         const float* __restrict__ k, const float* __restrict__ v,
                         const float* __restrict__ lse, const float* __restrict__ delta,
                         const uint8_t* __restrict__ key_keep, bool causal, float scale,
                         float* __restrict__ grad_q, AttentionShape shape, int64_t query_blocks) {
  __shared__ float k_tile[kKeysPerTile][kMaxD];
  __shared__ float v_tile[kKeysPerTile][kMaxD];
  const int64_t bh = blockIdx.x / query_blocks;
  const int64_t b = bh / shape.heads;
  const int64_t first_query = (blockIdx.x % query_blocks) * kQueriesPerBlock;
  const int64_t i = first_query + threadIdx.x;
  const int64_t D = shape.head_dim, Lq = shape.query_len, Lk = shape.key_len;
  const bool active = i < Lq;
  float q_row[kMaxD], do_row[kMaxD], dq[kMaxD];
  float row_lse = -INFINITY, row_delta = 0.0f;
  if (active) {
    load_row<kMaxD>(q_row, q + (bh * Lq + i) * D, D);
    load_row<kMaxD>(do_row, grad_out + (bh * Lq + i) * D, D);
    row_lse = lse[bh * Lq + i];
    row_delta = delta[bh * Lq + i];
  }
#pragma unroll
  for (int d = 0; d < kMaxD; ++d) dq[d] = 0.0f;
  const int64_t last_query = min(Lq, first_query + kQueriesPerBlock) - 1;
  const int64_t key_end = causal ? min(Lk, last_query + 1) : Lk;
  for (int64_t j0 = 0; j0 < key_end; j0 += kKeysPerTile) {
    __syncthreads();
    load_tile<kMaxD, kKeysPerTile>(k_tile, k + bh * Lk * D, j0, Lk, D);
    load_tile<kMaxD, kKeysPerTile>(v_tile, v + bh * Lk * D, j0, Lk, D);
    __syncthreads();
    if (!active || row_lse == -INFINITY) continue;
#pragma unroll 1
    for (int t = 0; t < kKeysPerTile; ++t) {
      const int64_t j = j0 + t;
      if (j >= Lk || !visible(key_keep, b, Lk, causal, i, j)) continue;
      const float p = expf(scale * dot_row<kMaxD>(q_row, k_tile[t]) - row_lse);
      const float ds = p * (dot_row<kMaxD>(do_row, v_tile[t]) - row_delta);
#pragma unroll
      for (int d = 0; d < kMaxD; ++d) dq[d] += ds * k_tile[t][d];
    }
  }
  if (!active) return;
  float* dq_row = grad_q + (bh * Lq + i) * D;
#pragma unroll
  for (int d = 0; d < kMaxD; ++d)
    if (d < D) dq_row[d] = scale * dq[d];
}

// One thread per key j streams query tiles. kWantDk: dK_j = scale * sum_i dS_ij Q_i;
// otherwise dV_j = sum_i P_ij dO_i. Two launches keep each thread's registers at
// 2-3 rows of kMaxD instead of 4.
template <int kMaxD, bool kWantDk>
__global__ void __launch_bounds__(kQueriesPerBlock)
flash_backward_dkv_kernel(const float* __restrict__ grad_out, const float* __restrict__ q,
                          const float* __restrict__ k, const float* __restrict__ v,
                          const float* __restrict__ lse, const float* __restrict__ delta,
                          const uint8_t* __restrict__ key_keep, bool causal, float scale,
                          float* __restrict__ grad, AttentionShape shape, int64_t key_blocks) {
  __shared__ float q_tile[kKeysPerTile][kMaxD];
  __shared__ float do_tile[kKeysPerTile][kMaxD];
  __shared__ float lse_tile[kKeysPerTile];
  __shared__ float delta_tile[kKeysPerTile];
  const int64_t bh = blockIdx.x / key_blocks;
  const int64_t b = bh / shape.heads;
  const int64_t first_key = (blockIdx.x % key_blocks) * kQueriesPerBlock;
  const int64_t j = first_key + threadIdx.x;
  const int64_t D = shape.head_dim, Lq = shape.query_len, Lk = shape.key_len;
  const bool active = j < Lk && (key_keep == nullptr || key_keep[b * Lk + j] != 0);
  float k_row[kMaxD], v_row[kMaxD], acc[kMaxD];
  if (active) {
    load_row<kMaxD>(k_row, k + (bh * Lk + j) * D, D);
    if (kWantDk) load_row<kMaxD>(v_row, v + (bh * Lk + j) * D, D);
  }
#pragma unroll
  for (int d = 0; d < kMaxD; ++d) acc[d] = 0.0f;
  // With a causal mask, queries before this block's first key see none of its keys.
  const int64_t query_begin = causal ? (first_key / kKeysPerTile) * kKeysPerTile : 0;
  for (int64_t i0 = query_begin; i0 < Lq; i0 += kKeysPerTile) {
    __syncthreads();
    load_tile<kMaxD, kKeysPerTile>(q_tile, q + bh * Lq * D, i0, Lq, D);
    load_tile<kMaxD, kKeysPerTile>(do_tile, grad_out + bh * Lq * D, i0, Lq, D);
    for (int t = threadIdx.x; t < kKeysPerTile; t += blockDim.x) {
      const int64_t i = i0 + t;
      lse_tile[t] = i < Lq ? lse[bh * Lq + i] : -INFINITY;
      delta_tile[t] = i < Lq ? delta[bh * Lq + i] : 0.0f;
    }
    __syncthreads();
    if (!active) continue;
#pragma unroll 1
    for (int t = 0; t < kKeysPerTile; ++t) {
      const int64_t i = i0 + t;
      if (i >= Lq || (causal && j > i) || lse_tile[t] == -INFINITY) continue;
      const float p = expf(scale * dot_row<kMaxD>(k_row, q_tile[t]) - lse_tile[t]);
      if (kWantDk) {
        const float ds = p * (dot_row<kMaxD>(v_row, do_tile[t]) - delta_tile[t]);
#pragma unroll
        for (int d = 0; d < kMaxD; ++d) acc[d] += ds * q_tile[t][d];
      } else {
#pragma unroll
        for (int d = 0; d < kMaxD; ++d) acc[d] += p * do_tile[t][d];
      }
    }
  }
  if (j >= Lk) return;
  float* grad_row = grad + (bh * Lk + j) * D;  // masked keys get exact zeros
  const float factor = kWantDk ? scale : 1.0f;
#pragma unroll
  for (int d = 0; d < kMaxD; ++d)
    if (d < D) grad_row[d] = factor * acc[d];
}

// ---- naive ---------------------------------------------------------------------------
// One block per query row (flattened over B, H, Lq). Shared memory: Lk scores, then P.
__global__ void naive_forward_kernel(const float* __restrict__ q, const float* __restrict__ k,
                                     const float* __restrict__ v, const uint8_t* __restrict__ key_keep,
                                     bool causal, float scale, float* __restrict__ out,
                                     float* __restrict__ lse, AttentionShape shape) {
  extern __shared__ float scores[];  // [Lk]
  __shared__ float scratch[kWarpSize];
  const int64_t row = blockIdx.x;  // (b, h, i)
  const int64_t D = shape.head_dim, Lq = shape.query_len, Lk = shape.key_len;
  const int64_t bh = row / Lq, i = row % Lq, b = bh / shape.heads;
  const float* q_row = q + row * D;
  float local_max = -INFINITY;
  for (int64_t j = threadIdx.x; j < Lk; j += blockDim.x) {
    float s = -INFINITY;
    if (visible(key_keep, b, Lk, causal, i, j)) {
      s = 0.0f;
      for (int64_t d = 0; d < D; ++d) s += q_row[d] * k[(bh * Lk + j) * D + d];
      s *= scale;
    }
    scores[j] = s;
    local_max = fmaxf(local_max, s);
  }
  const float row_max = block_reduce(local_max, scratch, MaxOp{}, -INFINITY);
  float local_sum = 0.0f;
  if (row_max != -INFINITY)
    for (int64_t j = threadIdx.x; j < Lk; j += blockDim.x) local_sum += expf(scores[j] - row_max);
  const float row_sum = block_reduce(local_sum, scratch, SumOp{}, 0.0f);
  const bool empty = row_max == -INFINITY;
  const float row_lse = empty ? -INFINITY : row_max + logf(row_sum);
  for (int64_t j = threadIdx.x; j < Lk; j += blockDim.x)
    scores[j] = empty ? 0.0f : expf(scores[j] - row_lse);
  __syncthreads();
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = 0.0f;
    for (int64_t j = 0; j < Lk; ++j) acc += scores[j] * v[(bh * Lk + j) * D + d];
    out[row * D + d] = acc;
  }
  if (threadIdx.x == 0) lse[row] = row_lse;
}

// One block per query row: P and dP rows in shared memory; dK, dV via atomicAdd.
__global__ void naive_backward_kernel(const float* __restrict__ grad_out, const float* __restrict__ q,
                                      const float* __restrict__ k, const float* __restrict__ v,
                                      const float* __restrict__ lse, const uint8_t* __restrict__ key_keep,
                                      bool causal, float scale, float* __restrict__ grad_q,
                                      float* grad_k, float* grad_v, AttentionShape shape) {
  extern __shared__ float shared[];  // p [Lk], ds [Lk]
  __shared__ float scratch[kWarpSize];
  const int64_t row = blockIdx.x;
  const int64_t D = shape.head_dim, Lq = shape.query_len, Lk = shape.key_len;
  const int64_t bh = row / Lq, i = row % Lq, b = bh / shape.heads;
  float* p = shared;
  float* ds = shared + Lk;
  const float row_lse = lse[row];
  const float* q_row = q + row * D;
  const float* do_row = grad_out + row * D;
  float local_delta = 0.0f;
  for (int64_t j = threadIdx.x; j < Lk; j += blockDim.x) {
    float pj = 0.0f, dpj = 0.0f;
    if (row_lse != -INFINITY && visible(key_keep, b, Lk, causal, i, j)) {
      float s = 0.0f;
      for (int64_t d = 0; d < D; ++d) s += q_row[d] * k[(bh * Lk + j) * D + d];
      pj = expf(scale * s - row_lse);
      for (int64_t d = 0; d < D; ++d) dpj += do_row[d] * v[(bh * Lk + j) * D + d];
    }
    p[j] = pj;
    ds[j] = dpj;
    local_delta += pj * dpj;
  }
  const float delta = block_reduce(local_delta, scratch, SumOp{}, 0.0f);  // = dO . O
  for (int64_t j = threadIdx.x; j < Lk; j += blockDim.x) ds[j] = p[j] * (ds[j] - delta);
  __syncthreads();
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = 0.0f;
    for (int64_t j = 0; j < Lk; ++j) acc += ds[j] * k[(bh * Lk + j) * D + d];
    grad_q[row * D + d] = scale * acc;
  }
  for (int64_t e = threadIdx.x; e < Lk * D; e += blockDim.x) {
    const int64_t j = e / D, d = e % D;
    if (p[j] == 0.0f && ds[j] == 0.0f) continue;
    atomicAdd(&grad_k[(bh * Lk + j) * D + d], scale * ds[j] * q_row[d]);
    atomicAdd(&grad_v[(bh * Lk + j) * D + d], p[j] * do_row[d]);
  }
}

void check_shape(const AttentionShape& shape) {
  MMS_CUDA_REQUIRE(shape.batch >= 0 && shape.heads > 0 && shape.query_len >= 0 &&
                       shape.key_len >= 0 && shape.head_dim > 0,
                   "attention: sizes must be non-negative with heads and head_dim > 0");
}

template <int kMaxD>
void launch_flash_forward(const float* q, const float* k, const float* v, const uint8_t* key_keep,
                          bool causal, float scale, float* out, float* lse, const AttentionShape& shape,
                          cudaStream_t stream) {
  const int64_t query_blocks = ceil_div(shape.query_len, kQueriesPerBlock);
  const int64_t blocks = shape.batch * shape.heads * query_blocks;
  MMS_CUDA_REQUIRE(blocks <= INT32_MAX, "attention: grid too large");
  flash_forward_kernel<kMaxD><<<unsigned(blocks), kQueriesPerBlock, 0, stream>>>(
      q, k, v, key_keep, causal, scale, out, lse, shape, query_blocks);
  MMS_CUDA_LAUNCH_CHECK();
}

template <int kMaxD>
void launch_flash_backward(const float* grad_out, const float* q, const float* k, const float* v,
                           const float* lse, const float* delta, const uint8_t* key_keep, bool causal,
                           float scale, float* grad_q, float* grad_k, float* grad_v,
                           const AttentionShape& shape, cudaStream_t stream) {
  const int64_t bh = shape.batch * shape.heads;
  const int64_t query_blocks = ceil_div(shape.query_len, kQueriesPerBlock);
  const int64_t key_blocks = ceil_div(shape.key_len, kQueriesPerBlock);
  MMS_CUDA_REQUIRE(bh * query_blocks <= INT32_MAX && bh * key_blocks <= INT32_MAX,
                   "attention backward: grid too large");
  if (query_blocks > 0) {
    flash_backward_dq_kernel<kMaxD><<<unsigned(bh * query_blocks), kQueriesPerBlock, 0, stream>>>(
        grad_out, q, k, v, lse, delta, key_keep, causal, scale, grad_q, shape, query_blocks);
    MMS_CUDA_LAUNCH_CHECK();
  }
  if (key_blocks > 0) {
    flash_backward_dkv_kernel<kMaxD, true><<<unsigned(bh * key_blocks), kQueriesPerBlock, 0, stream>>>(
        grad_out, q, k, v, lse, delta, key_keep, causal, scale, grad_k, shape, key_blocks);
    MMS_CUDA_LAUNCH_CHECK();
    flash_backward_dkv_kernel<kMaxD, false><<<unsigned(bh * key_blocks), kQueriesPerBlock, 0, stream>>>(
        grad_out, q, k, v, lse, delta, key_keep, causal, scale, grad_v, shape, key_blocks);
    MMS_CUDA_LAUNCH_CHECK();
  }
}

constexpr int64_t kNaiveMaxKeys = 6144;  // 2 * 6144 floats = 48 KB of shared memory

}  // namespace

void attention_forward_f32_naive(const float* q, const float* k, const float* v,
                                 const uint8_t* key_keep, bool causal, float scale, float* out,
                                 float* lse, const AttentionShape& shape, cudaStream_t stream) {
  check_shape(shape);
  const int64_t rows = shape.batch * shape.heads * shape.query_len;
  if (rows == 0) return;
  MMS_CUDA_REQUIRE(shape.key_len <= kNaiveMaxKeys, "attention (naive): key length above 6144");
  MMS_CUDA_REQUIRE(rows <= INT32_MAX, "attention (naive): grid too large");
  naive_forward_kernel<<<unsigned(rows), kNaiveThreads, size_t(shape.key_len) * sizeof(float), stream>>>(
      q, k, v, key_keep, causal, scale, out, lse, shape);
  MMS_CUDA_LAUNCH_CHECK();
}

void attention_forward_f32(const float* q, const float* k, const float* v, const uint8_t* key_keep,
                           bool causal, float scale, float* out, float* lse,
                           const AttentionShape& shape, cudaStream_t stream) {
  check_shape(shape);
  if (shape.batch * shape.heads * shape.query_len == 0) return;
  if (shape.head_dim <= 64) {
    launch_flash_forward<64>(q, k, v, key_keep, causal, scale, out, lse, shape, stream);
  } else if (shape.head_dim <= 128) {
    launch_flash_forward<128>(q, k, v, key_keep, causal, scale, out, lse, shape, stream);
  } else {
    attention_forward_f32_naive(q, k, v, key_keep, causal, scale, out, lse, shape, stream);
  }
}

void attention_backward_f32_naive(const float* grad_out, const float* q, const float* k,
                                  const float* v, const float* out, const float* lse,
                                  const uint8_t* key_keep, bool causal, float scale, float* grad_q,
                                  float* grad_k, float* grad_v, const AttentionShape& shape,
                                  cudaStream_t stream) {
  check_shape(shape);
  const size_t kv_bytes = size_t(shape.batch * shape.heads * shape.key_len * shape.head_dim) * sizeof(float);
  MMS_CUDA_CHECK(cudaMemsetAsync(grad_k, 0, kv_bytes, stream));
  MMS_CUDA_CHECK(cudaMemsetAsync(grad_v, 0, kv_bytes, stream));
  const int64_t rows = shape.batch * shape.heads * shape.query_len;
  if (rows == 0) return;
  MMS_CUDA_REQUIRE(shape.key_len <= kNaiveMaxKeys, "attention backward (naive): key length above 6144");
  MMS_CUDA_REQUIRE(rows <= INT32_MAX, "attention backward (naive): grid too large");
  naive_backward_kernel<<<unsigned(rows), kNaiveThreads, 2 * size_t(shape.key_len) * sizeof(float), stream>>>(
      grad_out, q, k, v, lse, key_keep, causal, scale, grad_q, grad_k, grad_v, shape);
  MMS_CUDA_LAUNCH_CHECK();
}

void attention_backward_f32(const float* grad_out, const float* q, const float* k, const float* v,
                            const float* out, const float* lse, const uint8_t* key_keep,
                            bool causal, float scale, float* grad_q, float* grad_k, float* grad_v,
                            const AttentionShape& shape, cudaStream_t stream) {
  check_shape(shape);
  if (shape.head_dim > 128) {
    attention_backward_f32_naive(grad_out, q, k, v, out, lse, key_keep, causal, scale, grad_q, grad_k,
                                 grad_v, shape, stream);
    return;
  }
  const int64_t rows = shape.batch * shape.heads * shape.query_len;
  ScratchBuffer delta(size_t(rows > 0 ? rows : 1) * sizeof(float));
  if (rows > 0) {
    constexpr int kDeltaThreads = 256;
    attention_delta_kernel<<<unsigned(ceil_div(rows, kDeltaThreads / kWarpSize)), kDeltaThreads, 0, stream>>>(
        grad_out, out, delta.as<float>(), rows, shape.head_dim);
    MMS_CUDA_LAUNCH_CHECK();
  }
  if (shape.head_dim <= 64) {
    launch_flash_backward<64>(grad_out, q, k, v, lse, delta.as<float>(), key_keep, causal, scale, grad_q,
                              grad_k, grad_v, shape, stream);
  } else {
    launch_flash_backward<128>(grad_out, q, k, v, lse, delta.as<float>(), key_keep, causal, scale, grad_q,
                               grad_k, grad_v, shape, stream);
  }
}

// ---- key-padding masks as lengths (for cuDNN's attention) ------------------------------

namespace {

__device__ unsigned long long g_non_prefix_mask_count = 0;

// One thread per list: its keep row's leading run of nonzero bytes is its length; a
// nonzero byte after the run (a mask that is not right-padding), or a row that keeps no
// key at all (cuDNN does not support it; our kernels give out = 0 there), is counted.
__global__ void key_prefix_lengths_kernel(const uint8_t* __restrict__ keep, int32_t* __restrict__ key_lengths,
                                          int32_t* __restrict__ query_lengths, int64_t batch, int64_t key_len,
                                          int64_t query_len) {
  const int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (b >= batch) return;
  const uint8_t* row = keep + b * key_len;
  int64_t length = 0;
  while (length < key_len && row[length] != 0) ++length;
  bool prefix = true;
  for (int64_t j = length; j < key_len; ++j) prefix = prefix && row[j] == 0;
  if (!prefix || length == 0) atomicAdd(&g_non_prefix_mask_count, 1ull);
  key_lengths[b] = static_cast<int32_t>(length);
  query_lengths[b] = static_cast<int32_t>(query_len);
}

}  // namespace

void key_prefix_lengths(const uint8_t* keep, int32_t* key_lengths, int32_t* query_lengths, int64_t batch,
                        int64_t key_len, int64_t query_len, cudaStream_t stream) {
  if (batch == 0) return;
  key_prefix_lengths_kernel<<<unsigned(ceil_div(batch, 128)), 128, 0, stream>>>(keep, key_lengths, query_lengths,
                                                                               batch, key_len, query_len);
  MMS_CUDA_LAUNCH_CHECK();
}

int64_t take_non_prefix_mask_count() { return take_device_counter(g_non_prefix_mask_count); }

}  // namespace mms::cuda
