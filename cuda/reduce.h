// Row reductions over the last dim of a contiguous [rows, cols] matrix (dispatch moves
// the reduced dims last; a full reduction is rows = 1).
#pragma once

#include <cstdint>

#include "cuda/common.h"

namespace mms::cuda {

// Same members and order as mms::ReduceOp.
enum class ReduceKind : uint8_t { Sum, Max, Min, ArgMax, LogSumExp };

// out[r] = reduce(x[r, :]). out is float [rows], or int64 [rows] for ArgMax (first maximum
// wins; NaN counts as the maximum). Max/Min propagate NaN. Empty rows give the identity
// (0, -inf, +inf, index 0, -inf).
// Tuned: a warp per row (shuffles, no shared memory) for rows up to 4096 wide; a
// 1024-thread block per row beyond, so one long row (rows = 1) still fills an SM.
void reduce_last_f32(ReduceKind op, const float* x, int64_t rows, int64_t cols, void* out,
                     cudaStream_t stream);
// The lesson's baseline: one thread per row, a serial loop (uncoalesced: neighbouring
// threads read addresses `cols` apart).
void reduce_last_f32_naive(ReduceKind op, const float* x, int64_t rows, int64_t cols, void* out,
                           cudaStream_t stream);

}  // namespace mms::cuda
