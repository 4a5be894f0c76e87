// Row gathers and scatters: embeddings (index_select rows / index_add rows) and
// per-row gathers along the last dim (gather / scatter_add).
//
// Indices are int64 and checked on the device: an out-of-range index is skipped (its
// output zero-filled for the gathers) and counted; take_bad_index_count() reads and
// resets the count (it synchronises, so the glue calls it in debug builds, or when
// MMS_CUDA_DEBUG_SYNC=1, and reports the op).
#pragma once

#include <cstddef>
#include <cstdint>

#include "cuda/common.h"

namespace mms::cuda {

// out[i, :] = table[index[i], :]; table contiguous [table_rows, row_size] of elements of
// `element_size` bytes (1, 2, 4 or 8), out contiguous [index_count, row_size].
void index_select_rows(const void* table, size_t element_size, int64_t table_rows, int64_t row_size,
                       const int64_t* index, int64_t index_count, void* out, cudaStream_t stream);
// table_grad[index[i], :] += grad[i, :] (atomicAdd: repeated indices accumulate).
void index_add_rows_f32(const float* grad, const int64_t* index, int64_t index_count,
                        int64_t row_size, float* table_grad, int64_t table_rows,
                        cudaStream_t stream);
// out[r, j] = x[r, index[r, j]]; x [rows, cols], index and out [rows, k].
void gather_last(const void* x, size_t element_size, int64_t rows, int64_t cols,
                 const int64_t* index, int64_t k, void* out, cudaStream_t stream);
// out[r, index[r, j]] += grad[r, j] (atomicAdd); out [rows, cols], grad and index [rows, k].
void scatter_add_last_f32(const float* grad, const int64_t* index, int64_t rows, int64_t k,
                          float* out, int64_t cols, cudaStream_t stream);

// Number of out-of-range indices seen since the last call (synchronises the stream).
int64_t take_bad_index_count();

}  // namespace mms::cuda
