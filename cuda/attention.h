// Scaled dot-product attention, forward and backward, for one layout:
// q [B, H, Lq, D], k and v [B, H, Lk, D], out [B, H, Lq, D], lse [B, H, Lq], all
// contiguous float32. P = softmax(scale * q k^T + mask), out = P v.
// Masks: key_keep [B, Lk] bytes (nonzero = attend; may be null) and `causal` (key j is
// hidden from query i when j > i). A query with no visible key gets out = 0, lse = -inf,
// and zero gradients.
#pragma once

#include <cstdint>

#include "cuda/common.h"

namespace mms::cuda {

struct AttentionShape {
  int64_t batch = 0, heads = 0, query_len = 0, key_len = 0, head_dim = 0;
};

// Flash-style fused forward: no [Lq, Lk] matrix in memory; key/value tiles stream through
// shared memory while each thread keeps one query's running (max, sum, output) in
// registers (online softmax). head_dim <= 128; larger falls back to the naive kernel.
void attention_forward_f32(const float* q, const float* k, const float* v, const uint8_t* key_keep,
                           bool causal, float scale, float* out, float* lse,
                           const AttentionShape& shape, cudaStream_t stream);
// Reference: one block per query row, the full score row in shared memory, exact softmax.
void attention_forward_f32_naive(const float* q, const float* k, const float* v,
                                 const uint8_t* key_keep, bool causal, float scale, float* out,
                                 float* lse, const AttentionShape& shape, cudaStream_t stream);

// Fused backward from the saved lse (P is recomputed tile by tile, never stored):
// delta_i = dO_i . O_i; dS = P (dO V^T - delta); dQ = scale dS K; dK = scale dS^T Q;
// dV = P^T dO. Deterministic: dQ by query-owning threads, dK and dV by key-owning threads.
void attention_backward_f32(const float* grad_out, const float* q, const float* k, const float* v,
                            const float* out, const float* lse, const uint8_t* key_keep,
                            bool causal, float scale, float* grad_q, float* grad_k, float* grad_v,
                            const AttentionShape& shape, cudaStream_t stream);
// Reference: one block per query row; dK and dV accumulate with atomicAdd.
void attention_backward_f32_naive(const float* grad_out, const float* q, const float* k,
                                  const float* v, const float* out, const float* lse,
                                  const uint8_t* key_keep, bool causal, float scale, float* grad_q,
                                  float* grad_k, float* grad_v, const AttentionShape& shape,
                                  cudaStream_t stream);

// Key-padding masks as lengths, the form cuDNN's fused attention takes: key_lengths[b] =
// the length of keep row b's leading run of nonzero bytes ([batch, key_len] bytes),
// query_lengths[b] = query_len (int32, on the device). A row that is not right-padding
// (a nonzero byte after its run), or keeps no key, is counted; take_non_prefix_mask_count()
// returns and resets that count (a host wait: debug mode only).
void key_prefix_lengths(const uint8_t* keep, int32_t* key_lengths, int32_t* query_lengths, int64_t batch,
                        int64_t key_len, int64_t query_len, cudaStream_t stream);
int64_t take_non_prefix_mask_count();

}  // namespace mms::cuda
