// indexing.cu: index_select / index_add over rows, gather / scatter_add along the last dim.
//
// Algorithm: one thread per output element (row, column) in a grid-stride loop; the
// column index is fastest, so a warp reads 32 consecutive elements of one table row.
// The adds use atomicAdd on float: repeated indices (the same token in many positions)
// accumulate correctly, at the cost of bit-reproducibility in the summation order.
//
// Floor: memory bound: an embedding lookup of 32*4*77 tokens x 512 floats moves 2 x 20 MB
// (~13 us at 3 TB/s); the backward's atomics to a few hot rows serialise, which the
// floor does not count.
#include "cuda/check.h"
#include "cuda/device_utils.cuh"
#include "cuda/indexing.h"

namespace mms::cuda {

namespace {

constexpr int kThreads = 256;

__device__ unsigned long long g_bad_index_count = 0;

__device__ __forceinline__ bool index_ok(int64_t index, int64_t bound) {
  if (index >= 0 && index < bound) return true;
  atomicAdd(&g_bad_index_count, 1ull);
  return false;
}

template <typename Word>
__global__ void index_select_rows_kernel(const Word* __restrict__ table, int64_t table_rows,
                                         int64_t row_size, const int64_t* __restrict__ index,
                                         int64_t index_count, Word* __restrict__ out) {
  const int64_t total = index_count * row_size;
  for (int64_t flat = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; flat < total;
       flat += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = flat / row_size, column = flat % row_size;
    const int64_t row = index[i];
    const bool ok = row >= 0 && row < table_rows;
    if (!ok && column == 0) atomicAdd(&g_bad_index_count, 1ull);
    out[flat] = ok ? table[row * row_size + column] : Word(0);
  }
}

__global__ void index_add_rows_kernel(const float* __restrict__ grad, const int64_t* __restrict__ index,
                                      int64_t index_count, int64_t row_size, float* table_grad,
                                      int64_t table_rows) {
  const int64_t total = index_count * row_size;
  for (int64_t flat = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; flat < total;
       flat += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = flat / row_size, column = flat % row_size;
    const int64_t row = index[i];
    if (column == 0 ? !index_ok(row, table_rows) : (row < 0 || row >= table_rows)) continue;
    atomicAdd(&table_grad[row * row_size + column], grad[flat]);
  }
}

template <typename Word>
__global__ void gather_last_kernel(const Word* __restrict__ x, int64_t rows, int64_t cols,
                                   const int64_t* __restrict__ index, int64_t k, Word* __restrict__ out) {
  const int64_t total = rows * k;
  for (int64_t flat = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; flat < total;
       flat += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = flat / k;
    const int64_t column = index[flat];
    out[flat] = index_ok(column, cols) ? x[r * cols + column] : Word(0);
  }
}

__global__ void scatter_add_last_kernel(const float* __restrict__ grad, const int64_t* __restrict__ index,
                                        int64_t rows, int64_t k, float* out, int64_t cols) {
  const int64_t total = rows * k;
  for (int64_t flat = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; flat < total;
       flat += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = flat / k;
    const int64_t column = index[flat];
    if (index_ok(column, cols)) atomicAdd(&out[r * cols + column], grad[flat]);
  }
}

}  // namespace

void index_select_rows(const void* table, size_t element_size, int64_t table_rows, int64_t row_size,
                       const int64_t* index, int64_t index_count, void* out, cudaStream_t stream) {
  const int64_t total = index_count * row_size;
  if (total == 0) return;
  const unsigned grid = grid_for(total, kThreads);
  switch (element_size) {
    case 1:
      index_select_rows_kernel<uint8_t><<<grid, kThreads, 0, stream>>>(
          static_cast<const uint8_t*>(table), table_rows, row_size, index, index_count, static_cast<uint8_t*>(out));
      break;
    case 2:
      index_select_rows_kernel<uint16_t><<<grid, kThreads, 0, stream>>>(
          static_cast<const uint16_t*>(table), table_rows, row_size, index, index_count, static_cast<uint16_t*>(out));
      break;
    case 4:
      index_select_rows_kernel<uint32_t><<<grid, kThreads, 0, stream>>>(
          static_cast<const uint32_t*>(table), table_rows, row_size, index, index_count, static_cast<uint32_t*>(out));
      break;
    case 8:
      index_select_rows_kernel<uint64_t><<<grid, kThreads, 0, stream>>>(
          static_cast<const uint64_t*>(table), table_rows, row_size, index, index_count, static_cast<uint64_t*>(out));
      break;
    default: MMS_CUDA_REQUIRE(false, "index_select_rows: element size must be 1, 2, 4 or 8 bytes");
  }
  MMS_CUDA_LAUNCH_CHECK();
}

void index_add_rows_f32(const float* grad, const int64_t* index, int64_t index_count,
                        int64_t row_size, float* table_grad, int64_t table_rows,
                        cudaStream_t stream) {
  const int64_t total = index_count * row_size;
  if (total == 0) return;
  index_add_rows_kernel<<<grid_for(total, kThreads), kThreads, 0, stream>>>(grad, index, index_count,
                                                                          row_size, table_grad, table_rows);
  MMS_CUDA_LAUNCH_CHECK();
}

void gather_last(const void* x, size_t element_size, int64_t rows, int64_t cols,
                 const int64_t* index, int64_t k, void* out, cudaStream_t stream) {
  const int64_t total = rows * k;
  if (total == 0) return;
  const unsigned grid = grid_for(total, kThreads);
  switch (element_size) {
    case 1:
      gather_last_kernel<uint8_t><<<grid, kThreads, 0, stream>>>(
          static_cast<const uint8_t*>(x), rows, cols, index, k, static_cast<uint8_t*>(out));
      break;
    case 2:
      gather_last_kernel<uint16_t><<<grid, kThreads, 0, stream>>>(
          static_cast<const uint16_t*>(x), rows, cols, index, k, static_cast<uint16_t*>(out));
      break;
    case 4:
      gather_last_kernel<uint32_t><<<grid, kThreads, 0, stream>>>(
          static_cast<const uint32_t*>(x), rows, cols, index, k, static_cast<uint32_t*>(out));
      break;
    case 8:
      gather_last_kernel<uint64_t><<<grid, kThreads, 0, stream>>>(
          static_cast<const uint64_t*>(x), rows, cols, index, k, static_cast<uint64_t*>(out));
      break;
    default: MMS_CUDA_REQUIRE(false, "gather_last: element size must be 1, 2, 4 or 8 bytes");
  }
  MMS_CUDA_LAUNCH_CHECK();
}

void scatter_add_last_f32(const float* grad, const int64_t* index, int64_t rows, int64_t k,
                          float* out, int64_t cols, cudaStream_t stream) {
  const int64_t total = rows * k;
  if (total == 0) return;
  scatter_add_last_kernel<<<grid_for(total, kThreads), kThreads, 0, stream>>>(grad, index, rows, k, out, cols);
  MMS_CUDA_LAUNCH_CHECK();
}

int64_t take_bad_index_count() { return take_device_counter(g_bad_index_count); }

}  // namespace mms::cuda
