// cuDNN's fused attention (cuDNN 9's flash attention, reached through its C++ frontend
// graph API), kept beside our own kernels: bench/kernels times it against the flash
// kernel and the GEMM path, and MMS_ATTENTION=cudnn sends autocast's bf16 attention
// through it (tensor/ops/attention.cpp).
//
// Layout: q [B, H, Lq, D], k and v [B, H, Lk, D], out [B, H, Lq, D], all bfloat16 and
// contiguous; stats [B, H, Lq] float32, the row log-sum-exp of the scaled, masked scores
// (the backward's input, as our kernels' lse). Masks: `causal` hides key j > query i
// (top-left aligned, as ours); key padding is given as lengths: keys j >= seq_len_kv[b]
// are hidden (int32 [B] on the device; seq_len_q [B], all Lq, goes with it, since cuDNN's
// padding mask takes both). Both null: no padding. A row with no visible key is not
// supported (our kernels give out = 0 there); CLIP's texts always keep their first token.
//
// Each distinct configuration (shape, masks, scale, direction) builds one cuDNN graph,
// once, and caches it with its execution plan; the workspace comes from our pool.
#pragma once

#include <cstdint>
#include <string>

#include "cuda/attention.h"
#include "cuda/common.h"

namespace mms::cuda {

// Whether this build has the cuDNN frontend (cuDNN itself is linked when found).
bool cudnn_attention_built();

// Each returns "" after queuing the work on `stream`, or why cuDNN cannot run this
// configuration (no engine for the shape on this card, a build without the frontend, ...);
// nothing is written then, so the caller can say so or take another path.
std::string cudnn_attention_forward(const void* q, const void* k, const void* v, const int32_t* seq_len_q,
                                    const int32_t* seq_len_kv, bool causal, float scale, void* out, float* stats,
                                    const AttentionShape& shape, cudaStream_t stream);
std::string cudnn_attention_backward(const void* q, const void* k, const void* v, const void* out,
                                     const void* grad_out, const float* stats, const int32_t* seq_len_q,
                                     const int32_t* seq_len_kv, bool causal, float scale, void* grad_q,
                                     void* grad_k, void* grad_v, const AttentionShape& shape, cudaStream_t stream);

}  // namespace mms::cuda
