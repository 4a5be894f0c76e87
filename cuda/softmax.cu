// softmax.cu: softmax / log_softmax forward and backward over the last dim of [rows, cols].
//
// Algorithm: a warp per row. The forward reads the row once to build the online
// (running max, sum of exp(x - max)) pair per lane (rescaling the sum whenever the max
// grows), merges the 32 pairs with shuffles into lse = max + log(sum), then reads the
// row again to write exp(x - lse) or x - lse. The naive baseline makes three serial passes
// per thread with uncoalesced loads. Backward: one shuffle-reduced dot product per row,
// then one elementwise pass.
//
// Attention's masked softmax (the GEMM path of attention for short sequences) is the
// same warp-per-row forward over the visible keys only: the query's row index gives the
// causal limit, the batch index the key-padding row. It writes hidden keys as 0 and the
// row's log-sum-exp, and can store the probabilities directly as bf16 for PV's mixed
// GEMM. What it replaced: where(mask, S, -inf), logsumexp, softmax, where(mask, P, 0)
// and a cast -- five passes over [B, H, Lq, Lk] (plus a broadcast mask) become one read
// of S and one write of P.
//
// Floor: memory bound: forward reads 2x and writes 1x 4 bytes per element (the second
// read usually hits L1/L2 for rows of a few KB); for attention scores [8*12*50, 50]
// that is ~0.1 us of HBM time, so launch latency dominates; row-wise ops over big
// matrices (e.g. [12800, 3072]) approach 3x4 bytes/element at ~3 TB/s.
#include <cmath>

#include "cuda/check.h"
#include "cuda/device_utils.cuh"
#include "cuda/softmax.h"

namespace mms::cuda {

namespace {

constexpr int kRowsPerBlock = 8;
constexpr int kLongRowThreads = 1024;
constexpr int64_t kLongRow = 4096;

__device__ __forceinline__ void write_row(const float* x_row, float* y_row, int64_t begin,
                                          int64_t step, int64_t cols, float lse, bool log) {
  for (int64_t c = begin; c < cols; c += step)
    y_row[c] = log ? x_row[c] - lse : expf(x_row[c] - lse);
}

__global__ void softmax_warp_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t rows,
                                    int64_t cols, bool log) {
  const int64_t row = blockIdx.x * int64_t(kRowsPerBlock) + threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= rows) return;
  const float* x_row = x + row * cols;
  LseState state{-INFINITY, 0.0f};
  for (int64_t c = lane; c < cols; c += kWarpSize) state = lse_add(state, x_row[c]);
  const float lse = lse_value(warp_lse(state));
  write_row(x_row, y + row * cols, lane, kWarpSize, cols, lse, log);
}

__global__ void softmax_block_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t rows,
                                     int64_t cols, bool log) {
  __shared__ float scratch[kWarpSize];
  const float* x_row = x + blockIdx.x * cols;
  float max_value = -INFINITY;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) max_value = nan_max(max_value, x_row[c]);
  max_value = block_reduce(max_value, scratch, MaxOp{}, -INFINITY);
  float sum = 0.0f;
  if (max_value != -INFINITY)
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) sum += expf(x_row[c] - max_value);
  sum = block_reduce(sum, scratch, SumOp{}, 0.0f);
  const float lse = lse_value({max_value, sum});
  write_row(x_row, y + blockIdx.x * cols, threadIdx.x, blockDim.x, cols, lse, log);
}

__global__ void softmax_thread_kernel(const float* __restrict__ x, float* __restrict__ y,
                                      int64_t rows, int64_t cols, bool log) {
  const int64_t row = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (row >= rows) return;
  const float* x_row = x + row * cols;
  float max_value = -INFINITY;
  for (int64_t c = 0; c < cols; ++c) max_value = fmaxf(max_value, x_row[c]);
  float sum = 0.0f;
  for (int64_t c = 0; c < cols; ++c) sum += expf(x_row[c] - max_value);
  const float lse = max_value + logf(sum);
  write_row(x_row, y + row * cols, 0, 1, cols, lse, log);
}

__global__ void softmax_backward_warp_kernel(const float* __restrict__ grad_y, const float* __restrict__ y,
                                             float* __restrict__ grad_x, int64_t rows, int64_t cols,
                                             bool log) {
  const int64_t row = blockIdx.x * int64_t(kRowsPerBlock) + threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= rows) return;
  const float* g = grad_y + row * cols;
  const float* y_row = y + row * cols;
  float* gx = grad_x + row * cols;
  float dot = 0.0f;  // sum(g * y) for softmax, sum(g) for log_softmax
  for (int64_t c = lane; c < cols; c += kWarpSize) dot += log ? g[c] : g[c] * y_row[c];
  dot = warp_sum(dot);
  for (int64_t c = lane; c < cols; c += kWarpSize)
    gx[c] = log ? g[c] - expf(y_row[c]) * dot : y_row[c] * (g[c] - dot);
}

__global__ void softmax_backward_block_kernel(const float* __restrict__ grad_y,
                                              const float* __restrict__ y, float* __restrict__ grad_x,
                                              int64_t rows, int64_t cols, bool log) {
  __shared__ float scratch[kWarpSize];
  const float* g = grad_y + blockIdx.x * cols;
  const float* y_row = y + blockIdx.x * cols;
  float* gx = grad_x + blockIdx.x * cols;
  float dot = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) dot += log ? g[c] : g[c] * y_row[c];
  dot = block_reduce(dot, scratch, SumOp{}, 0.0f);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
    gx[c] = log ? g[c] - expf(y_row[c]) * dot : y_row[c] * (g[c] - dot);
}

// Attention's masked softmax: a warp per row of scores [batch * heads * lq, lk].
template <bool kBf16Out>
__global__ void attention_softmax_kernel(const float* __restrict__ scores, const uint8_t* __restrict__ keep,
                                         void* __restrict__ probs, float* __restrict__ lse, int64_t rows,
                                         int64_t heads, int64_t lq, int64_t lk, bool causal) {
  const int64_t row = blockIdx.x * int64_t(kRowsPerBlock) + threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (row >= rows) return;
  const int64_t query = row % lq, batch = row / (lq * heads);
  const int64_t limit = causal && query + 1 < lk ? query + 1 : lk;  // keys past the query are hidden
  const uint8_t* keep_row = keep ? keep + batch * lk : nullptr;
  const float* s = scores + row * lk;
  LseState state{-INFINITY, 0.0f};
  for (int64_t c = lane; c < limit; c += kWarpSize)
    if (keep_row == nullptr || keep_row[c] != 0) state = lse_add(state, s[c]);
  const float row_lse = lse_value(warp_lse(state));
  for (int64_t c = lane; c < lk; c += kWarpSize) {
    const bool visible = c < limit && (keep_row == nullptr || keep_row[c] != 0);
    const float p = visible && row_lse != -INFINITY ? expf(s[c] - row_lse) : 0.0f;
    if constexpr (kBf16Out) {
      static_cast<uint16_t*>(probs)[row * lk + c] = float_to_bf16_bits(p);
    } else {
      static_cast<float*>(probs)[row * lk + c] = p;
    }
  }
  if (lane == 0 && lse != nullptr) lse[row] = row_lse;
}

}  // namespace

void attention_softmax_f32(const float* scores, const uint8_t* keep, void* probs, bool probs_bf16, float* lse,
                           int64_t batch, int64_t heads, int64_t lq, int64_t lk, bool causal,
                           cudaStream_t stream) {
  const int64_t rows = batch * heads * lq;
  if (rows == 0 || lk == 0) return;
  const unsigned blocks = unsigned(ceil_div(rows, kRowsPerBlock));
  if (probs_bf16) {
    attention_softmax_kernel<true><<<blocks, kRowsPerBlock * kWarpSize, 0, stream>>>(scores, keep, probs, lse,
                                                                                     rows, heads, lq, lk, causal);
  } else {
    attention_softmax_kernel<false><<<blocks, kRowsPerBlock * kWarpSize, 0, stream>>>(scores, keep, probs, lse,
                                                                                      rows, heads, lq, lk, causal);
  }
  MMS_CUDA_LAUNCH_CHECK();
}

void softmax_forward_f32(const float* x, float* y, int64_t rows, int64_t cols, bool log,
                         cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  if (cols > kLongRow) {
    softmax_block_kernel<<<unsigned(rows), kLongRowThreads, 0, stream>>>(x, y, rows, cols, log);
  } else {
    softmax_warp_kernel<<<unsigned(ceil_div(rows, kRowsPerBlock)), kRowsPerBlock * kWarpSize, 0,
                          stream>>>(x, y, rows, cols, log);
  }
  MMS_CUDA_LAUNCH_CHECK();
}

void softmax_forward_f32_naive(const float* x, float* y, int64_t rows, int64_t cols, bool log,
                               cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  softmax_thread_kernel<<<unsigned(ceil_div(rows, 256)), 256, 0, stream>>>(x, y, rows, cols, log);
  MMS_CUDA_LAUNCH_CHECK();
}

void softmax_backward_f32(const float* grad_y, const float* y, float* grad_x, int64_t rows,
                          int64_t cols, bool log, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  if (cols > kLongRow) {
    softmax_backward_block_kernel<<<unsigned(rows), kLongRowThreads, 0, stream>>>(grad_y, y, grad_x,
                                                                                rows, cols, log);
  } else {
    softmax_backward_warp_kernel<<<unsigned(ceil_div(rows, kRowsPerBlock)), kRowsPerBlock * kWarpSize,
                                   0, stream>>>(grad_y, y, grad_x, rows, cols, log);
  }
  MMS_CUDA_LAUNCH_CHECK();
}

}  // namespace mms::cuda
