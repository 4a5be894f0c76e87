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

}  // namespace mms::cuda
