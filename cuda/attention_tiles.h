// Attention on tensor cores for short sequences: one thread block holds a whole
// (batch, head) pair -- Q, K, V and the [Lq, Lk] scores -- in shared memory, and runs
// QK^T, PV and the backward's four products as 16x16x16 bf16 WMMA tiles with float32
// accumulation. Made for CLIP's 50 image and 77 text tokens (head_dim 64), where the
// GEMM path spends most of its time writing the scores out and transposing heads.
//
// Operands are bfloat16 [B, H, L, D] views whose last dim is contiguous: the
// projections' own [B, L, H, D] memory is read where it lies (no head transposes), and
// out and the gradients are written through strides as well (ops lays them out as
// [B, L, H, D], so the merge back to [B, L, H * D] is free). out, grad_out and the
// gradients are one dtype, float32 or bfloat16 (`out_bf16`); lse [B, H, Lq] float32
// contiguous. Masks as cuda/attention.h: key_keep [B, Lk] bytes (nonzero = attend; any
// pattern, may be null) and `causal`; a query with no visible key gets out = 0,
// lse = -inf and zero gradients.
#pragma once

#include <cstdint>

#include "cuda/attention.h"
#include "cuda/common.h"

namespace mms::cuda {

// Element strides of one [B, H, L, D] operand (the D stride is 1).
struct HeadStrides {
  int64_t batch = 0, head = 0, token = 0;
};

// Whether the tile kernels take this shape on the current device: head_dim a multiple
// of 16 up to 128, 1 <= Lq, Lk <= 128, the backward's shared memory within the block
// limit, and a card with bf16 tensor cores (sm_80+).
bool attention_tiles_supported(int64_t query_len, int64_t key_len, int64_t head_dim);

void attention_tiles_forward(const uint16_t* q, HeadStrides q_strides, const uint16_t* k, HeadStrides k_strides,
                             const uint16_t* v, HeadStrides v_strides, const uint8_t* key_keep, bool causal,
                             float scale, void* out, HeadStrides out_strides, bool out_bf16, float* lse,
                             const AttentionShape& shape, cudaStream_t stream);

// grad_out and out in the output dtype (out_bf16), grad_q/k/v written in it too.
void attention_tiles_backward(const void* grad_out, HeadStrides grad_out_strides, const void* out,
                              HeadStrides out_strides, const uint16_t* q, HeadStrides q_strides, const uint16_t* k,
                              HeadStrides k_strides, const uint16_t* v, HeadStrides v_strides, const float* lse,
                              const uint8_t* key_keep, bool causal, float scale, void* grad_q,
                              HeadStrides grad_q_strides, void* grad_k, HeadStrides grad_k_strides, void* grad_v,
                              HeadStrides grad_v_strides, bool out_bf16, const AttentionShape& shape,
                              cudaStream_t stream);

}  // namespace mms::cuda
