// copy.cu: strided copies with dtype conversion, fill and arange.
//
// Shapes: dst and src share one shape of n elements, any strides on both sides
// (coalesced first, so a contiguous pair is one dim of stride 1).
//
// Algorithm: one thread per element in a grid-stride loop; flat index -> offsets on
// both sides (32-bit multiply-and-shift division while indices fit: cuda/fast_divider.h);
// load, convert, store. Both contiguous: cudaMemcpyAsync for one type, a plain
// element-i-to-element-i conversion kernel for two.
//
// Floor: memory bound, (sizeof src + sizeof dst) bytes per element. A transposing copy
// (e.g. [B, L, H, D] -> [B, H, L, D]) reads or writes with a stride, so it reaches a
// fraction of peak; that is what the attention layout change costs.
#include <type_traits>

#include "cuda/check.h"
#include "cuda/copy.h"
#include "cuda/scalar_types.cuh"

namespace mms::cuda {

namespace {

constexpr int kThreads = 256;

template <ScalarType S, ScalarType D>
__global__ void copy_kernel(const typename TypeTraits<S>::Storage* __restrict__ src,
                            typename TypeTraits<D>::Storage* __restrict__ dst,
                            OffsetCalculator<2> calc, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t offsets[2];
    calc.offsets(i, offsets);
    const auto value = TypeTraits<S>::load(src[offsets[1]]);
    dst[offsets[0]] = TypeTraits<D>::store(convert_to<D>(value));
  }
}

// Both sides contiguous, types differ (autocast's float32 <-> bfloat16 casts, most of
// all): no offsets to compute, element i to element i.
template <ScalarType S, ScalarType D>
__global__ void convert_contiguous_kernel(const typename TypeTraits<S>::Storage* __restrict__ src,
                                          typename TypeTraits<D>::Storage* __restrict__ dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = TypeTraits<D>::store(convert_to<D>(TypeTraits<S>::load(src[i])));
}

template <ScalarType D>
__global__ void arange_kernel(typename TypeTraits<D>::Storage* __restrict__ dst, int64_t n,
                              double start, double step) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = TypeTraits<D>::store(convert_to<D>(start + static_cast<double>(i) * step));
}

template <ScalarType D>
__global__ void fill_value_kernel(typename TypeTraits<D>::Storage* __restrict__ dst, int64_t n,
                                  double value) {
  const auto stored = TypeTraits<D>::store(convert_to<D>(value));
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = stored;
}

}  // namespace

void copy_strided(const void* src, ScalarType src_type, void* dst, ScalarType dst_type,
                  const StridedLayout* layouts, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  if (layout_is_contiguous(layouts[0]) && layout_is_contiguous(layouts[1])) {
    if (src_type == dst_type) {
      MMS_CUDA_CHECK(cudaMemcpyAsync(dst, src, size_t(n) * scalar_type_size(src_type),
                                     cudaMemcpyDeviceToDevice, stream));
      return;
    }
    MMS_CUDA_DISPATCH_TYPE(src_type, S, MMS_CUDA_DISPATCH_TYPE(dst_type, D,
        convert_contiguous_kernel<S, D><<<grid_for(n, kThreads), kThreads, 0, stream>>>(
            static_cast<const typename TypeTraits<S>::Storage*>(src),
            static_cast<typename TypeTraits<D>::Storage*>(dst), n)));
    MMS_CUDA_LAUNCH_CHECK();
    return;
  }
  const auto calc = make_offset_calculator<2>(layouts);
  MMS_CUDA_DISPATCH_TYPE(src_type, S, MMS_CUDA_DISPATCH_TYPE(dst_type, D,
      copy_kernel<S, D><<<grid_for(n, kThreads), kThreads, 0, stream>>>(
          static_cast<const typename TypeTraits<S>::Storage*>(src),
          static_cast<typename TypeTraits<D>::Storage*>(dst), calc, n)));
  MMS_CUDA_LAUNCH_CHECK();
}

void fill(void* dst, ScalarType type, int64_t n, double value, cudaStream_t stream) {
  if (n == 0) return;
  MMS_CUDA_DISPATCH_TYPE(type, D,
      fill_value_kernel<D><<<grid_for(n, kThreads), kThreads, 0, stream>>>(
          static_cast<typename TypeTraits<D>::Storage*>(dst), n, value));
  MMS_CUDA_LAUNCH_CHECK();
}

void arange(void* dst, ScalarType type, int64_t n, double start, double step, cudaStream_t stream) {
  if (n == 0) return;
  MMS_CUDA_DISPATCH_TYPE(type, D,
      arange_kernel<D><<<grid_for(n, kThreads), kThreads, 0, stream>>>(
          static_cast<typename TypeTraits<D>::Storage*>(dst), n, start, step));
  MMS_CUDA_LAUNCH_CHECK();
}

}  // namespace mms::cuda
