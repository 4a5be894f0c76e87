// Concatenation of contiguous byte ranges in one launch: the kernel behind ops::cat
// when its inputs lie end to end in the output (cat along dim 0, or along a dim with
// only size-1 dims before it, of contiguous inputs).
#pragma once

#include <cstdint>

#include "cuda/common.h"

namespace mms::cuda {

// out = src[0] | src[1] | ... | src[count - 1], where src[i] holds bytes[i] bytes; out
// holds their sum. Any count (packs of kConcatSegments per launch); sizes may be 0.
void concat_bytes(const void* const* src, const int64_t* bytes, int64_t count, void* out, cudaStream_t stream);

}  // namespace mms::cuda
