// Copies with dtype conversion, fills and ranges: the kernels behind .to(dtype),
// .contiguous(), cat/stack (strided writes into slices) and factories.
#pragma once

#include <cstdint>

#include "cuda/common.h"

namespace mms::cuda {

// dst[...] = convert(src[...]) over a shared shape; layouts = {dst, src} coalesced
// together; both sides any strides. float -> integer truncates toward zero; nonzero ->
// true; bf16/f16 round to nearest even (bit-exact with the host conversions).
void copy_strided(const void* src, ScalarType src_type, void* dst, ScalarType dst_type,
                  const StridedLayout* layouts, int64_t n, cudaStream_t stream);

// dst[i] = value (converted to `type`) for contiguous dst of n elements.
void fill(void* dst, ScalarType type, int64_t n, double value, cudaStream_t stream);

// dst[i] = start + i * step (computed in double, then converted) for contiguous dst.
void arange(void* dst, ScalarType type, int64_t n, double start, double step, cudaStream_t stream);

}  // namespace mms::cuda
