// layernorm.cu: LayerNorm forward and backward over the last dim of [rows, cols].
//
// Forward, a warp per row: mean by a shuffle-reduced sum, then the biased variance as
// the mean of (x - mean)^2 (two passes: no catastrophic cancellation of E[x^2] - E[x]^2),
// then y = (x - mean) * rstd * w + b. Statistics are fp32 and saved as [rows].
// Backward for grad_x, a warp per row, with xhat = (x - mean) * rstd and dxhat = g * w:
//   grad_x = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),
// plus, optionally, an addend: the gradient x already has from its other consumer. In a
// pre-norm transformer every norm's input is the residual stream, which the next add
// also reads; folding that gradient in here saves the add's launch and two of its three
// passes (read grad_x, write the sum; the addend is read either way).
// grad_weight / grad_bias are column sums over rows: stage 1 gives each block 32 columns
// x a chunk of rows (threads along columns read coalesced 128-byte rows) and writes
// partial sums; stage 2 adds the chunks. Fixed order: bit-reproducible, unlike atomics.
//
// Floor: memory bound. Forward reads x (3 passes, 2 from cache) and writes y: ~8 bytes per
// element from HBM; [12800, 768] is 39 MB, ~13 us at 3 TB/s. Backward reads g and x and
// writes grad_x (12 bytes per element) plus the column pass.
//
// bf16 activations (autocast): y may be written as bf16 (rounded once from the float32
// value) for a GEMM that reads bf16 anyway, and grad_y read as bf16 (what that GEMM's
// input gradient is): 6 bytes per element forward and 10 backward. Statistics, x and the
// gradients of x and the parameters stay float32.
#include <cmath>

#include "cuda/check.h"
#include "cuda/device_utils.cuh"
#include "cuda/layernorm.h"
#include "cuda/memory.h"

namespace mms::cuda {

namespace {

constexpr int kRowsPerBlock = 8;

// y and grad_y as float32 or as bf16 bits.
__device__ __forceinline__ void store_value(float* p, float value) { *p = value; }
__device__ __forceinline__ void store_value(uint16_t* p, float value) { *p = float_to_bf16_bits(value); }
__device__ __forceinline__ float load_value(const float* p) { return *p; }
__device__ __forceinline__ float load_value(const uint16_t* p) { return bf16_bits_to_float(*p); }

template <typename OutT>
__global__ void layer_norm_forward_warp_kernel(const float* __restrict__ x, const float* __restrict__ weight,
                                               const float* __restrict__ bias, OutT* __restrict__ y,
                                               float* __restrict__ mean_out, float* __restrict__ rstd_out,
                                               int64_t rows, int64_t cols, float eps) {
  const int64_t row = blockIdx.x * int64_t(kRowsPerBlock) + threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= rows) return;
  const float* x_row = x + row * cols;
  float sum = 0.0f;
  for (int64_t c = lane; c < cols; c += kWarpSize) sum += x_row[c];
  const float mean = warp_sum(sum) / float(cols);
  float squares = 0.0f;
  for (int64_t c = lane; c < cols; c += kWarpSize) {
    const float d = x_row[c] - mean;
    squares += d * d;
  }
  const float rstd = 1.0f / sqrtf(warp_sum(squares) / float(cols) + eps);
  OutT* y_row = y + row * cols;
  for (int64_t c = lane; c < cols; c += kWarpSize) {
    float value = (x_row[c] - mean) * rstd;
    if (weight) value *= weight[c];
    if (bias) value += bias[c];
    store_value(y_row + c, value);
  }
  if (lane == 0) {
    mean_out[row] = mean;
    rstd_out[row] = rstd;
  }
}

__global__ void layer_norm_forward_thread_kernel(const float* __restrict__ x, const float* __restrict__ weight,
                                                 const float* __restrict__ bias, float* __restrict__ y,
                                                 float* __restrict__ mean_out, float* __restrict__ rstd_out,
                                                 int64_t rows, int64_t cols, float eps) {
  const int64_t row = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (row >= rows) return;
  const float* x_row = x + row * cols;
  float sum = 0.0f;
  for (int64_t c = 0; c < cols; ++c) sum += x_row[c];
  const float mean = sum / float(cols);
  float squares = 0.0f;
  for (int64_t c = 0; c < cols; ++c) squares += (x_row[c] - mean) * (x_row[c] - mean);
  const float rstd = 1.0f / sqrtf(squares / float(cols) + eps);
  for (int64_t c = 0; c < cols; ++c) {
    float value = (x_row[c] - mean) * rstd;
    if (weight) value *= weight[c];
    if (bias) value += bias[c];
    y[row * cols + c] = value;
  }
  mean_out[row] = mean;
  rstd_out[row] = rstd;
}

// grad_x = addend (when non-null: the input's gradient from its other consumer, folded
// in here instead of a separate add) + the normalisation's own gradient.
template <typename GradT>
__global__ void layer_norm_backward_input_kernel(const GradT* __restrict__ grad_y, const float* __restrict__ x,
                                                 const float* __restrict__ weight, const float* __restrict__ mean,
                                                 const float* __restrict__ rstd, const float* __restrict__ addend,
                                                 float* __restrict__ grad_x, int64_t rows, int64_t cols) {
  const int64_t row = blockIdx.x * int64_t(kRowsPerBlock) + threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= rows) return;
  const GradT* g = grad_y + row * cols;
  const float* x_row = x + row * cols;
  const float row_mean = mean[row], row_rstd = rstd[row];
  float sum_dxhat = 0.0f, sum_dxhat_xhat = 0.0f;
  for (int64_t c = lane; c < cols; c += kWarpSize) {
    const float xhat = (x_row[c] - row_mean) * row_rstd;
    const float dxhat = weight ? load_value(g + c) * weight[c] : load_value(g + c);
    sum_dxhat += dxhat;
    sum_dxhat_xhat += dxhat * xhat;
  }
  const float mean_dxhat = warp_sum(sum_dxhat) / float(cols);
  const float mean_dxhat_xhat = warp_sum(sum_dxhat_xhat) / float(cols);
  float* gx = grad_x + row * cols;
  const float* addend_row = addend ? addend + row * cols : nullptr;
  for (int64_t c = lane; c < cols; c += kWarpSize) {
    const float xhat = (x_row[c] - row_mean) * row_rstd;
    const float dxhat = weight ? load_value(g + c) * weight[c] : load_value(g + c);
    const float own = row_rstd * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat);
    gx[c] = addend_row ? addend_row[c] + own : own;
  }
}

constexpr int kColumnTile = 32;  // threadIdx.x: one column each
constexpr int kRowLanes = 8;     // threadIdx.y: rows interleaved within a chunk

// partial_{weight,bias}[chunk, col] over rows [chunk * rows_per_chunk, ...).
template <typename GradT>
__global__ void layer_norm_param_partials_kernel(const GradT* __restrict__ grad_y, const float* __restrict__ x,
                                                 const float* __restrict__ mean, const float* __restrict__ rstd,
                                                 float* __restrict__ partial_weight, float* __restrict__ partial_bias,
                                                 int64_t rows, int64_t cols, int64_t rows_per_chunk) {
  __shared__ float shared_weight[kRowLanes][kColumnTile];
  __shared__ float shared_bias[kRowLanes][kColumnTile];
  const int64_t col = blockIdx.x * int64_t(kColumnTile) + threadIdx.x;
  const int64_t chunk = blockIdx.y;
  const int64_t row_begin = chunk * rows_per_chunk;
  const int64_t row_end = min(rows, row_begin + rows_per_chunk);
  float acc_weight = 0.0f, acc_bias = 0.0f;
  if (col < cols) {
    for (int64_t r = row_begin + threadIdx.y; r < row_end; r += kRowLanes) {
      const float g = load_value(grad_y + r * cols + col);
      acc_weight += g * (x[r * cols + col] - mean[r]) * rstd[r];
      acc_bias += g;
    }
  }
  shared_weight[threadIdx.y][threadIdx.x] = acc_weight;
  shared_bias[threadIdx.y][threadIdx.x] = acc_bias;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
    float total_weight = 0.0f, total_bias = 0.0f;
    for (int lane = 0; lane < kRowLanes; ++lane) {
      total_weight += shared_weight[lane][threadIdx.x];
      total_bias += shared_bias[lane][threadIdx.x];
    }
    partial_weight[chunk * cols + col] = total_weight;
    partial_bias[chunk * cols + col] = total_bias;
  }
}

__global__ void layer_norm_param_finish_kernel(const float* __restrict__ partial_weight,
                                               const float* __restrict__ partial_bias, float* grad_weight,
                                               float* grad_bias, int64_t chunks, int64_t cols) {
  const int64_t col = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (col >= cols) return;
  float total_weight = 0.0f, total_bias = 0.0f;
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    total_weight += partial_weight[chunk * cols + col];
    total_bias += partial_bias[chunk * cols + col];
  }
  if (grad_weight) grad_weight[col] = total_weight;
  if (grad_bias) grad_bias[col] = total_bias;
}

}  // namespace

namespace {
template <typename OutT>
void layer_norm_forward(const float* x, const float* weight, const float* bias, OutT* y, float* mean, float* rstd,
                        int64_t rows, int64_t cols, float eps, cudaStream_t stream) {
  if (rows == 0) return;
  MMS_CUDA_REQUIRE(cols > 0, "layer_norm: rows must not be empty");
  layer_norm_forward_warp_kernel<<<unsigned(ceil_div(rows, kRowsPerBlock)), kRowsPerBlock * kWarpSize, 0,
                                   stream>>>(x, weight, bias, y, mean, rstd, rows, cols, eps);
  MMS_CUDA_LAUNCH_CHECK();
}

template <typename GradT>
void layer_norm_backward(const GradT* grad_y, const float* x, const float* weight, const float* mean,
                         const float* rstd, const float* grad_x_addend, float* grad_x, float* grad_weight,
                         float* grad_bias, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (cols == 0) return;
  MMS_CUDA_REQUIRE(grad_x_addend == nullptr || grad_x != nullptr,
                   "layer_norm_backward: grad_x_addend is added to grad_x, which is not asked for");
  if (rows > 0 && grad_x) {
    layer_norm_backward_input_kernel<<<unsigned(ceil_div(rows, kRowsPerBlock)), kRowsPerBlock * kWarpSize,
                                       0, stream>>>(grad_y, x, weight, mean, rstd, grad_x_addend, grad_x, rows,
                                                    cols);
    MMS_CUDA_LAUNCH_CHECK();
  }
  if (!grad_weight && !grad_bias) return;
  // Enough chunks to give ~4 blocks per SM at CLIP widths, each at least 64 rows long.
  const int64_t chunks = rows == 0 ? 1 : std::min<int64_t>(64, ceil_div(rows, 64));
  const int64_t rows_per_chunk = rows == 0 ? 1 : ceil_div(rows, chunks);
  ScratchBuffer partials(size_t(2 * chunks * cols) * sizeof(float));
  float* partial_weight = partials.as<float>();
  float* partial_bias = partial_weight + chunks * cols;
  const dim3 grid(unsigned(ceil_div(cols, kColumnTile)), unsigned(chunks));
  const dim3 block(kColumnTile, kRowLanes);
  layer_norm_param_partials_kernel<<<grid, block, 0, stream>>>(grad_y, x, mean, rstd, partial_weight,
                                                               partial_bias, rows, cols, rows_per_chunk);
  MMS_CUDA_LAUNCH_CHECK();
  layer_norm_param_finish_kernel<<<unsigned(ceil_div(cols, 256)), 256, 0, stream>>>(
      partial_weight, partial_bias, grad_weight, grad_bias, chunks, cols);
  MMS_CUDA_LAUNCH_CHECK();
}
}  // namespace

void layer_norm_forward_f32(const float* x, const float* weight, const float* bias, float* y,
                            float* mean, float* rstd, int64_t rows, int64_t cols, float eps,
                            cudaStream_t stream) {
  layer_norm_forward(x, weight, bias, y, mean, rstd, rows, cols, eps, stream);
}

void layer_norm_forward_f32_bf16(const float* x, const float* weight, const float* bias, uint16_t* y,
                                 float* mean, float* rstd, int64_t rows, int64_t cols, float eps,
                                 cudaStream_t stream) {
  layer_norm_forward(x, weight, bias, y, mean, rstd, rows, cols, eps, stream);
}

void layer_norm_forward_f32_naive(const float* x, const float* weight, const float* bias, float* y,
                                  float* mean, float* rstd, int64_t rows, int64_t cols, float eps,
                                  cudaStream_t stream) {
  if (rows == 0) return;
  MMS_CUDA_REQUIRE(cols > 0, "layer_norm: rows must not be empty");
  layer_norm_forward_thread_kernel<<<unsigned(ceil_div(rows, 256)), 256, 0, stream>>>(
      x, weight, bias, y, mean, rstd, rows, cols, eps);
  MMS_CUDA_LAUNCH_CHECK();
}

void layer_norm_backward_f32(const float* grad_y, const float* x, const float* weight,
                             const float* mean, const float* rstd, const float* grad_x_addend, float* grad_x,
                             float* grad_weight, float* grad_bias, int64_t rows, int64_t cols,
                             cudaStream_t stream) {
  layer_norm_backward(grad_y, x, weight, mean, rstd, grad_x_addend, grad_x, grad_weight, grad_bias, rows, cols,
                      stream);
}

void layer_norm_backward_bf16_grad(const uint16_t* grad_y, const float* x, const float* weight,
                                   const float* mean, const float* rstd, const float* grad_x_addend, float* grad_x,
                                   float* grad_weight, float* grad_bias, int64_t rows, int64_t cols,
                                   cudaStream_t stream) {
  layer_norm_backward(grad_y, x, weight, mean, rstd, grad_x_addend, grad_x, grad_weight, grad_bias, rows, cols,
                      stream);
}

}  // namespace mms::cuda
