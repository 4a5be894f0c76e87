// Softmax and log-softmax over the last dim of a contiguous [rows, cols] matrix.
#pragma once

#include <cstdint>

#include "cuda/common.h"

namespace mms::cuda {

// y = softmax(x) or log_softmax(x), row-wise.
// Tuned: a warp per row, one pass for the (max, sum-exp) statistics (online softmax)
// and one pass to write; rows wider than 4096 get a block.
void softmax_forward_f32(const float* x, float* y, int64_t rows, int64_t cols, bool log,
                         cudaStream_t stream);
// Baseline: one thread per row, three serial passes (max, sum, write).
void softmax_forward_f32_naive(const float* x, float* y, int64_t rows, int64_t cols, bool log,
                               cudaStream_t stream);
// grad_x = y * (g - sum(g * y))       (softmax; y the probabilities)
// grad_x = g - exp(y) * sum(g)        (log_softmax; y the log-probabilities)
void softmax_backward_f32(const float* grad_y, const float* y, float* grad_x, int64_t rows,
                          int64_t cols, bool log, cudaStream_t stream);

// Attention's masked softmax (the GEMM path; tensor/backend.h attention_softmax) over
// batch * heads * lq rows of lk float32 scores: key j is visible to query i when
// keep[b * lk + j] != 0 (keep null: all keys) and, when causal, j <= i.
//   probs = exp(S - lse) at visible keys, 0 elsewhere; float32, or bfloat16 bits when
//   probs_bf16 (rounded to nearest even: PV's mixed-GEMM operand, no cast pass after);
//   lse (null: not written) = log sum exp over visible keys, -inf for a row with none.
// A warp per row, as the plain softmax: one online (max, sum) pass over the visible
// keys, one pass writing every key. lk >= 1.
void attention_softmax_f32(const float* scores, const uint8_t* keep, void* probs, bool probs_bf16, float* lse,
                           int64_t batch, int64_t heads, int64_t lq, int64_t lk, bool causal,
                           cudaStream_t stream);

}  // namespace mms::cuda
