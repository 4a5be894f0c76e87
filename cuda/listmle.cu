// listmle.cu: ListMLE loss and gradient, one block per list.
//
// Shapes: scores [lists, width] (MM-SCALE: width = scenarios per image, tens), order
// [lists, width], lengths [lists] -> loss [lists], grad [lists, width].
//
// Algorithm, per block: (1) zero the gradient row; gather the scores into rank order in
// shared memory. (2) One thread walks the list backwards keeping a running (max, sum)
// to produce the suffix log-sum-exps lse_i: an O(n) serial scan, cheap at list sizes of
// tens and exact in the order the CPU uses. (3) In parallel: the loss terms
// lse_i - t_i (block reduction), and for each position k the gradient
// sum_{i<=k} exp(t_k - lse_i) - 1, every term <= 1 (lse_i >= t_k for i <= k), so no
// overflow at any score scale.
//
// Floor: negligible: a few KB per step. What matters is being one launch instead of
// the dozen small ops an autograd composition would take.
#include <cmath>

#include "cuda/check.h"
#include "cuda/device_utils.cuh"
#include "cuda/listmle.h"

namespace mms::cuda {

namespace {

constexpr int kThreads = 128;

__global__ void listmle_kernel(const float* __restrict__ scores, const int64_t* __restrict__ order,
                               const int64_t* __restrict__ lengths, int64_t width,
                               float* __restrict__ loss, float* __restrict__ grad) {
  extern __shared__ float shared[];  // ranked scores [width], suffix lse [width]
  __shared__ float scratch[kWarpSize];
  float* ranked = shared;
  float* suffix_lse = shared + width;
  const int64_t list = blockIdx.x;
  const float* s = scores + list * width;
  const int64_t* rank = order + list * width;
  float* g = grad + list * width;
  int64_t n = lengths[list];
  n = n < 0 ? 0 : (n > width ? width : n);

  for (int64_t c = threadIdx.x; c < width; c += blockDim.x) g[c] = 0.0f;
  if (n < 2) {
    if (threadIdx.x == 0) loss[list] = 0.0f;
    return;
  }
  for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
    const int64_t item = rank[k];
    ranked[k] = (item >= 0 && item < width) ? s[item] : 0.0f;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float top = -INFINITY, sum = 0.0f;
    for (int64_t k = n - 1; k >= 0; --k) {
      const float value = ranked[k];
      if (value > top) {
        sum = sum * expf(top - value) + 1.0f;
        top = value;
      } else {
        sum += expf(value - top);
      }
      suffix_lse[k] = top + logf(sum);
    }
  }
  __syncthreads();
  float local_loss = 0.0f;
  for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
    local_loss += suffix_lse[k] - ranked[k];
    float total = 0.0f;
    for (int64_t i = 0; i <= k; ++i) total += expf(ranked[k] - suffix_lse[i]);
    const int64_t item = rank[k];
    if (item >= 0 && item < width) g[item] = total - 1.0f;
  }
  const float list_loss = block_reduce(local_loss, scratch, SumOp{}, 0.0f);
  if (threadIdx.x == 0) loss[list] = list_loss;
}

}  // namespace

void listmle_f32(const float* scores, const int64_t* order, const int64_t* lengths, int64_t lists,
                 int64_t width, float* loss, float* grad_scores, cudaStream_t stream) {
  if (lists == 0) return;
  MMS_CUDA_REQUIRE(width <= 6144, "listmle: lists longer than 6144 items do not fit in shared memory");
  MMS_CUDA_REQUIRE(lists <= INT32_MAX, "listmle: too many lists for one grid");
  const size_t shared_bytes = 2 * size_t(width > 0 ? width : 1) * sizeof(float);
  listmle_kernel<<<unsigned(lists), kThreads, shared_bytes, stream>>>(scores, order, lengths, width,
                                                                      loss, grad_scores);
  MMS_CUDA_LAUNCH_CHECK();
}

}  // namespace mms::cuda
