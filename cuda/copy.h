// Copies with dtype conversion, fills and ranges: the kernels behind .to(dtype),
// .contiguous(), cat/stack (strided writes into slices) and factories.
#pragma once

#include <cstdint>

#include "cuda/common.h"

namespace mms::cuda {

// dst[...] = convert(src[...]) over a shared shape; layouts = {dst, src} coalesced
// together; both sides any strides. float -> integer truncates toward zero; nonzero ->
// true; bf16/f16 round to nearest even (bit-exact with the host conversions).
// Tuned: both contiguous -> cudaMemcpyAsync (one type) or convert_contiguous; 4 elements
// per thread when the innermost dim is contiguous on both sides with a size and outer
// strides that are multiples of 4 and both pointers are aligned to 4 elements; otherwise
// one element per thread (copy_strided_naive).
void copy_strided(const void* src, ScalarType src_type, void* dst, ScalarType dst_type,
                  const StridedLayout* layouts, int64_t n, cudaStream_t stream);
// The same with the scalar strided kernel always, contiguous layouts included (the
// lesson's baseline).
void copy_strided_naive(const void* src, ScalarType src_type, void* dst, ScalarType dst_type,
                        const StridedLayout* layouts, int64_t n, cudaStream_t stream);

// dst[i] = convert(src[i]) for contiguous src and dst of n elements, any two types (the
// same one included). Tuned: 4 elements per thread as one vector load and one vector
// store (two 16-byte accesses each way for 8-byte types) when both pointers are aligned
// to 4 elements of their type (a scalar tail for n % 4); otherwise one element per thread.
void convert_contiguous(const void* src, ScalarType src_type, void* dst, ScalarType dst_type, int64_t n,
                        cudaStream_t stream);
// The same with one element per thread always (the lesson's baseline).
void convert_contiguous_naive(const void* src, ScalarType src_type, void* dst, ScalarType dst_type, int64_t n,
                              cudaStream_t stream);

// dst[i] = value (converted to `type`) for contiguous dst of n elements.
void fill(void* dst, ScalarType type, int64_t n, double value, cudaStream_t stream);

// dst[i] = start + i * step (computed in double, then converted) for contiguous dst.
void arange(void* dst, ScalarType type, int64_t n, double start, double step, cudaStream_t stream);

}  // namespace mms::cuda
