// concat.cu: out = in_0 | in_1 | ... for contiguous inputs laid end to end, one launch.
//
// Shapes: any count of contiguous byte ranges (tensors of one dtype, any sizes) whose
// concatenation is the output's memory: ops::cat along dim 0, or along a dim with only
// size-1 dims before it.
//
// Why a kernel of its own. ops::cat copied each input into a narrow view of the output,
// one cudaMemcpyAsync (a launch) per input. Training stacks the q, k and v weights and
// biases of every attention layer into one projection each step (nn/transformer.cpp):
// at ViT-B/32 that is 48 cats of 3 inputs, 150 launches, most of them tiny (a bias is
// 768 floats), and the H200 profile charged them 0.56 ms of a 22 ms bf16 step while the
// ~250 MB they move take ~0.06 ms at the copy bandwidth. One launch per cat leaves the
// bytes and a third of the launches.
//
// Algorithm: the inputs' start pointers and the running byte offsets where each ends in
// the output travel in the kernel's arguments (up to kConcatSegments per launch). The
// kernel walks the output in words in a grid-stride loop; a thread finds its input by a
// linear search over those few ends and copies one word. The word is the widest of 16,
// 8, 4, 2 or 1 bytes that divides every input's start address, every size and the
// output's address, so the usual case (float32 weights from the pool, sizes multiples
// of 4 floats) moves 16-byte vectors and nothing is ever misaligned.
//
// Floor: memory bound, each byte read once and written once; plus one launch per pack.
#include <cstdint>
#include <initializer_list>

#include "cuda/check.h"
#include "cuda/concat.h"
#include "cuda/device_utils.cuh"

namespace mms::cuda {

namespace {

constexpr int kConcatSegments = 8;
constexpr int kThreads = 256;

struct Segments {
  const unsigned char* src[kConcatSegments];
  int64_t end[kConcatSegments];  // in words: where input i ends in the output
  int count = 0;
};

template <typename Word>
__global__ void concat_kernel(Segments segments, Word* __restrict__ out, int64_t words) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < words; i += int64_t(gridDim.x) * blockDim.x) {
    int segment = 0;
    while (i >= segments.end[segment]) ++segment;  // ends increase; i < the last end
    const int64_t begin = segment == 0 ? 0 : segments.end[segment - 1];
    out[i] = reinterpret_cast<const Word*>(segments.src[segment])[i - begin];
  }
}

template <typename Word>
void launch(Segments segments, const int64_t* bytes, void* out, cudaStream_t stream) {
  int64_t words = 0;
  for (int i = 0; i < segments.count; ++i) {
    words += bytes[i] / int64_t(sizeof(Word));
    segments.end[i] = words;
  }
  if (words == 0) return;
  concat_kernel<Word><<<grid_for(words, kThreads), kThreads, 0, stream>>>(segments, static_cast<Word*>(out), words);
  MMS_CUDA_LAUNCH_CHECK();
}

// The widest word size in {16, 8, 4, 2, 1} dividing every address and size (an empty
// input's address does not count: nothing is read from it).
int word_size(const Segments& segments, const int64_t* bytes, const void* out) {
  uint64_t bits = reinterpret_cast<uintptr_t>(out);
  for (int i = 0; i < segments.count; ++i)
    if (bytes[i] > 0) bits |= reinterpret_cast<uintptr_t>(segments.src[i]) | uint64_t(bytes[i]);
  for (int size : {16, 8, 4, 2})
    if (bits % uint64_t(size) == 0) return size;
  return 1;
}

}  // namespace

void concat_bytes(const void* const* src, const int64_t* bytes, int64_t count, void* out, cudaStream_t stream) {
  unsigned char* cursor = static_cast<unsigned char*>(out);
  for (int64_t first = 0; first < count; first += kConcatSegments) {
    Segments segments;
    int64_t pack_bytes = 0;
    segments.count = int(count - first < kConcatSegments ? count - first : kConcatSegments);
    for (int i = 0; i < segments.count; ++i) {
      MMS_CUDA_REQUIRE(bytes[first + i] >= 0, "concat_bytes: negative size");
      segments.src[i] = static_cast<const unsigned char*>(src[first + i]);
      pack_bytes += bytes[first + i];
    }
    const int64_t* pack_sizes = bytes + first;
    switch (word_size(segments, pack_sizes, cursor)) {
      case 16: launch<uint4>(segments, pack_sizes, cursor, stream); break;
      case 8: launch<uint2>(segments, pack_sizes, cursor, stream); break;
      case 4: launch<uint32_t>(segments, pack_sizes, cursor, stream); break;
      case 2: launch<uint16_t>(segments, pack_sizes, cursor, stream); break;
      default: launch<unsigned char>(segments, pack_sizes, cursor, stream); break;
    }
    cursor += pack_bytes;
  }
}

}  // namespace mms::cuda
