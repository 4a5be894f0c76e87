// Plain types shared by every kernel family of cuda/: the stream handle, element types
// and strided layouts. Includable by g++ without the CUDA headers, and depends on
// nothing else of mmscale (tensor/cuda_glue/ translates Tensors into these).
#pragma once

#include <cstddef>
#include <cstdint>

// The runtime's own spelling, so this header and <cuda_runtime.h> agree.
struct CUstream_st;
typedef CUstream_st* cudaStream_t;

namespace mms::cuda {

// Element types, in the same order as mms::DType (the glue static_asserts this).
enum class ScalarType : uint8_t { Float32, Float64, BFloat16, Float16, Int64, Int32, UInt8, Bool };

const char* scalar_type_name(ScalarType type);
size_t scalar_type_size(ScalarType type);

// The most dims a strided kernel handles after coalescing (see coalesce_layouts).
constexpr int kMaxDims = 10;

// Where the elements of one operand live: element (i0, ..., in) of the shared shape is
// at data + sum_d i_d * strides[d] (strides in elements, 0 along broadcast dims).
struct StridedLayout {
  int ndim = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};
};

// Builds the layouts of `count` operands sharing one shape (`ndim` sizes), merging
// adjacent dims wherever every operand steps through them as one (stride[d] ==
// stride[d+1] * size[d+1]) and dropping size-1 dims. A contiguous tensor becomes one dim
// of stride 1, so "generic strided" costs one division per element at most. Returns
// false when more than kMaxDims dims remain.
inline bool coalesce_layouts(int ndim, const int64_t* sizes, const int64_t* const* strides,
                             int count, StridedLayout* out) {
  int64_t merged_sizes[64];
  int64_t merged_strides[8][64];
  if (ndim > 64 || count > 8) return false;
  int kept = 0;
  for (int d = 0; d < ndim; ++d) {
    if (sizes[d] == 1) continue;
    bool merge = kept > 0;
    for (int t = 0; merge && t < count; ++t)
      merge = merged_strides[t][kept - 1] == strides[t][d] * sizes[d];
    if (merge) {
      merged_sizes[kept - 1] *= sizes[d];
      for (int t = 0; t < count; ++t) merged_strides[t][kept - 1] = strides[t][d];
    } else {
      merged_sizes[kept] = sizes[d];
      for (int t = 0; t < count; ++t) merged_strides[t][kept] = strides[t][d];
      ++kept;
    }
  }
  if (kept == 0) {  // a scalar (or all dims of size 1): one element at offset 0
    merged_sizes[0] = 1;
    for (int t = 0; t < count; ++t) merged_strides[t][0] = 1;
    kept = 1;
  }
  if (kept > kMaxDims) return false;
  for (int t = 0; t < count; ++t) {
    out[t].ndim = kept;
    for (int d = 0; d < kept; ++d) {
      out[t].sizes[d] = merged_sizes[d];
      out[t].strides[d] = merged_strides[t][d];
    }
  }
  return true;
}

inline bool layout_is_contiguous(const StridedLayout& layout) {
  return layout.ndim == 1 && layout.strides[0] == 1;
}

}  // namespace mms::cuda
