// copy.cu: strided copies with dtype conversion, fill and arange.
//
// Shapes: dst and src share one shape of n elements, any strides on both sides
// (coalesced first, so a contiguous pair is one dim of stride 1).
//
// Algorithm, scalar (the naive variants, and the tuned ones' fallback): one thread per
// element in a grid-stride loop; flat index -> offsets on both sides (32-bit
// multiply-and-shift division while indices fit: cuda/fast_divider.h); load, convert,
// store. Both contiguous: no offsets, element i to element i (cudaMemcpyAsync when the
// types agree).
//
// Why vectorize: with one 2- or 4-byte element per thread, a warp issues a memory
// instruction per 64-128 bytes, and the scalar conversion reached ~1.5 TB/s of an H200's
// ~4.2 TB/s (autocast's float32 <-> bfloat16 casts were 17.6% of a bf16 training step).
// Moving 4 elements per thread as one aligned vector (Vec<T, 4>: a 16-byte access for
// float32, 8 for bf16) issues 4x fewer load/store instructions for the same bytes and, for
// strided copies, computes offsets 4x less often. The vector paths:
//  - contiguous conversion (both sides contiguous, types differ), when both base
//    pointers are aligned to 4 elements of their own type: thread i converts elements
//    4i .. 4i+3; the n % 4 last elements go to the scalar kernel (a 4-thread launch).
//    A misaligned pointer (a view starting mid-vector) takes the scalar kernel throughout.
//  - strided copy (e.g. attention's [B, L, H, D] <-> [B, H, L, D] with D = 64), when
//    after coalescing the innermost dim has stride 1 on both sides and a size that is a
//    multiple of 4, every other stride on both sides is a multiple of 4, and both base
//    pointers are aligned to 4 elements: the same offset calculation runs on layouts in
//    units of 4 elements (innermost size / 4, outer strides / 4), so a vector never
//    straddles a stride jump and every vector stays aligned. Otherwise (D = 6, D = 3, a
//    transposed innermost dim, a misaligned view) the scalar kernel.
// Each element is converted exactly as the scalar kernel converts it, so the vector paths
// are bit-exact with the scalar ones (and with the host conversions).
//
// Variants: copy_strided_naive and convert_contiguous_naive = one element per thread
// always; copy_strided and convert_contiguous take the vector paths when they can
// (measured in bench/kernels).
//
// Floor: memory bound, (sizeof src + sizeof dst) bytes per element: 6 for float32 <->
// bfloat16: ~1.5 us per million elements at ~4 TB/s. A transposing copy with a contiguous
// innermost run of D elements moves whole 4*D-byte (float32) segments, 256 bytes for
// D = 64, so it can approach the contiguous floor; with D = 3 every access is a short
// scattered one and it reaches a fraction of peak.
#include <type_traits>

#include "cuda/check.h"
#include "cuda/copy.h"
#include "cuda/scalar_types.cuh"

namespace mms::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kVec = 4;  // elements per thread on the vector paths

template <ScalarType S>
using Storage = typename TypeTraits<S>::Storage;

// N elements moved as one memory access. alignas(sizeof(T) * N) is a promise: the
// address of every Vec is a multiple of its size, which the host checks before it takes
// a vector path.
template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

// The built-in type of one access of `Bytes` bytes (16, one LDG.128, is the widest).
template <int Bytes> struct AccessWord;
template <> struct AccessWord<4> { using Type = uint32_t; };  // 4 x uint8 / bool
template <> struct AccessWord<8> { using Type = uint2; };     // 4 x bf16 / f16
template <> struct AccessWord<16> { using Type = uint4; };    // 4 x float32 / int32

// A whole Vec read/written through built-in vector words: one access for 4, 8 or 16
// bytes, two 16-byte ones for 32 (4 x float64 / int64). Why not just `src[i]`: the
// compiler splits a struct copy into one load per member once the members are used one
// by one, and did not merge the loads back (ld.global.nc.f32 x 4, checked in the PTX);
// a load of a uint4 is one ld.global.nc.v4.u32 by construction. The memcpy between words
// and elements is a register reinterpretation, no memory traffic.
template <typename V>
__device__ __forceinline__ V load_vec(const V* pointer) {
  constexpr int kBytes = sizeof(V) < 16 ? int(sizeof(V)) : 16;
  using Word = typename AccessWord<kBytes>::Type;
  Word words[sizeof(V) / kBytes];
#pragma unroll
  for (int w = 0; w < int(sizeof(V) / kBytes); ++w) words[w] = reinterpret_cast<const Word*>(pointer)[w];
  V value;
  ::memcpy(&value, words, sizeof(V));
  return value;
}

template <typename V>
__device__ __forceinline__ void store_vec(V* pointer, const V& value) {
  constexpr int kBytes = sizeof(V) < 16 ? int(sizeof(V)) : 16;
  using Word = typename AccessWord<kBytes>::Type;
  Word words[sizeof(V) / kBytes];
  ::memcpy(words, &value, sizeof(V));
#pragma unroll
  for (int w = 0; w < int(sizeof(V) / kBytes); ++w) reinterpret_cast<Word*>(pointer)[w] = words[w];
}

// One element, converted as everywhere in this file: load to S's compute type, convert
// to D's compute type, store D's bits.
template <ScalarType S, ScalarType D>
__device__ __forceinline__ Storage<D> convert_element(Storage<S> value) {
  return TypeTraits<D>::store(convert_to<D>(TypeTraits<S>::load(value)));
}

template <ScalarType S, ScalarType D>
__device__ __forceinline__ Vec<Storage<D>, kVec> convert_vec(const Vec<Storage<S>, kVec>& in) {
  Vec<Storage<D>, kVec> out;
#pragma unroll
  for (int k = 0; k < kVec; ++k) out.v[k] = convert_element<S, D>(in.v[k]);
  return out;
}

template <ScalarType S, ScalarType D>
__global__ void copy_kernel(const Storage<S>* __restrict__ src, Storage<D>* __restrict__ dst,
                            OffsetCalculator<2> calc, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t offsets[2];
    calc.offsets(i, offsets);
    dst[offsets[0]] = convert_element<S, D>(src[offsets[1]]);
  }
}

// The strided copy in units of kVec elements: `calc` was built from layouts whose
// innermost size and outer strides are divided by kVec (vector_layouts below), so
// offsets[] index vectors, not elements. One offset calculation per 4 elements.
template <ScalarType S, ScalarType D>
__global__ void copy_vec_kernel(const Vec<Storage<S>, kVec>* __restrict__ src,
                                Vec<Storage<D>, kVec>* __restrict__ dst, OffsetCalculator<2> calc,
                                int64_t n_vec) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n_vec;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t offsets[2];
    calc.offsets(i, offsets);
    store_vec(dst + offsets[0], convert_vec<S, D>(load_vec(src + offsets[1])));
  }
}

// Both sides contiguous, types differ (autocast's float32 <-> bfloat16 casts, most of
// all): no offsets to compute, element i to element i. Also the tail of the vector path.
template <ScalarType S, ScalarType D>
__global__ void convert_contiguous_kernel(const Storage<S>* __restrict__ src, Storage<D>* __restrict__ dst,
                                          int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = convert_element<S, D>(src[i]);
}

// The same, vector i to vector i (elements 4i .. 4i+3) for the first n_vec * 4 elements.
template <ScalarType S, ScalarType D>
__global__ void convert_contiguous_vec_kernel(const Vec<Storage<S>, kVec>* __restrict__ src,
                                              Vec<Storage<D>, kVec>* __restrict__ dst, int64_t n_vec) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n_vec;
       i += int64_t(gridDim.x) * blockDim.x)
    store_vec(dst + i, convert_vec<S, D>(load_vec(src + i)));
}

template <ScalarType D>
__global__ void arange_kernel(Storage<D>* __restrict__ dst, int64_t n, double start, double step) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = TypeTraits<D>::store(convert_to<D>(start + static_cast<double>(i) * step));
}

template <ScalarType D>
__global__ void fill_value_kernel(Storage<D>* __restrict__ dst, int64_t n, double value) {
  const auto stored = TypeTraits<D>::store(convert_to<D>(value));
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = stored;
}

bool aligned_to(const void* pointer, size_t bytes) {
  return reinterpret_cast<uintptr_t>(pointer) % bytes == 0;
}

// Whether both base pointers can be read/written as Vec<T, kVec> of their own types.
bool vector_aligned(const void* src, ScalarType src_type, const void* dst, ScalarType dst_type) {
  return aligned_to(src, kVec * scalar_type_size(src_type)) && aligned_to(dst, kVec * scalar_type_size(dst_type));
}

// The {dst, src} layouts in units of kVec elements, when a strided copy can move kVec
// elements per thread (the conditions in the opening comment); false otherwise.
//  - innermost stride 1 on both sides and size % kVec == 0: every vector is kVec
//    adjacent elements of one innermost run, on both sides, and never straddles a run;
//  - every outer stride % kVec == 0 (0, a broadcast, included): each run starts a whole
//    number of vectors from the base, so with an aligned base every vector is aligned.
// Vector (i0, ..., i_last) is then elements (i0, ..., 4 * i_last .. 4 * i_last + 3): the
// innermost size and the outer strides divide by kVec; the innermost stride stays 1
// (one vector).
bool vector_layouts(const StridedLayout* layouts, const void* src, ScalarType src_type, const void* dst,
                    ScalarType dst_type, StridedLayout* out) {
  const int ndim = layouts[0].ndim;
  if (ndim < 1) return false;
  const int inner = ndim - 1;
  if (layouts[0].sizes[inner] % kVec != 0) return false;
  for (int t = 0; t < 2; ++t) {
    if (layouts[t].ndim != ndim || layouts[t].strides[inner] != 1) return false;
    for (int d = 0; d < inner; ++d)
      if (layouts[t].strides[d] % kVec != 0) return false;
  }
  if (!vector_aligned(src, src_type, dst, dst_type)) return false;
  for (int t = 0; t < 2; ++t) {
    out[t] = layouts[t];
    out[t].sizes[inner] /= kVec;
    for (int d = 0; d < inner; ++d) out[t].strides[d] /= kVec;
  }
  return true;
}

template <ScalarType S, ScalarType D>
void launch_convert_contiguous_naive(const void* src, void* dst, int64_t n, cudaStream_t stream) {
  convert_contiguous_kernel<S, D><<<grid_for(n, kThreads), kThreads, 0, stream>>>(
      static_cast<const Storage<S>*>(src), static_cast<Storage<D>*>(dst), n);
  MMS_CUDA_LAUNCH_CHECK();
}

// Vectors over the first n_vec * kVec elements, then the n % kVec left with the scalar
// kernel (kVec threads are enough). Both pointers aligned: the caller checked.
template <ScalarType S, ScalarType D>
void launch_convert_contiguous_vec(const void* src, void* dst, int64_t n, cudaStream_t stream) {
  const auto* s = static_cast<const Storage<S>*>(src);
  auto* d = static_cast<Storage<D>*>(dst);
  const int64_t n_vec = n / kVec;
  if (n_vec > 0) {
    convert_contiguous_vec_kernel<S, D><<<grid_for(n_vec, kThreads), kThreads, 0, stream>>>(
        reinterpret_cast<const Vec<Storage<S>, kVec>*>(s), reinterpret_cast<Vec<Storage<D>, kVec>*>(d), n_vec);
    MMS_CUDA_LAUNCH_CHECK();
  }
  const int64_t done = n_vec * kVec;
  if (done < n) {
    convert_contiguous_kernel<S, D><<<1, kVec, 0, stream>>>(s + done, d + done, n - done);
    MMS_CUDA_LAUNCH_CHECK();
  }
}

template <ScalarType S, ScalarType D>
void launch_copy_naive(const void* src, void* dst, const StridedLayout* layouts, int64_t n,
                       cudaStream_t stream) {
  copy_kernel<S, D><<<grid_for(n, kThreads), kThreads, 0, stream>>>(
      static_cast<const Storage<S>*>(src), static_cast<Storage<D>*>(dst), make_offset_calculator<2>(layouts), n);
  MMS_CUDA_LAUNCH_CHECK();
}

// vec_layouts from vector_layouts(); n_vec = n / kVec vectors.
template <ScalarType S, ScalarType D>
void launch_copy_vec(const void* src, void* dst, const StridedLayout* vec_layouts, int64_t n_vec,
                     cudaStream_t stream) {
  copy_vec_kernel<S, D><<<grid_for(n_vec, kThreads), kThreads, 0, stream>>>(
      static_cast<const Vec<Storage<S>, kVec>*>(src), static_cast<Vec<Storage<D>, kVec>*>(dst),
      make_offset_calculator<2>(vec_layouts), n_vec);
  MMS_CUDA_LAUNCH_CHECK();
}

}  // namespace

void convert_contiguous_naive(const void* src, ScalarType src_type, void* dst, ScalarType dst_type, int64_t n,
                              cudaStream_t stream) {
  if (n == 0) return;
  MMS_CUDA_DISPATCH_TYPE(src_type, S, MMS_CUDA_DISPATCH_TYPE(dst_type, D,
      launch_convert_contiguous_naive<S, D>(src, dst, n, stream)));
}

void convert_contiguous(const void* src, ScalarType src_type, void* dst, ScalarType dst_type, int64_t n,
                        cudaStream_t stream) {
  if (n == 0) return;
  if (!vector_aligned(src, src_type, dst, dst_type)) {
    convert_contiguous_naive(src, src_type, dst, dst_type, n, stream);
    return;
  }
  MMS_CUDA_DISPATCH_TYPE(src_type, S, MMS_CUDA_DISPATCH_TYPE(dst_type, D,
      launch_convert_contiguous_vec<S, D>(src, dst, n, stream)));
}

void copy_strided_naive(const void* src, ScalarType src_type, void* dst, ScalarType dst_type,
                        const StridedLayout* layouts, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  MMS_CUDA_DISPATCH_TYPE(src_type, S, MMS_CUDA_DISPATCH_TYPE(dst_type, D,
      launch_copy_naive<S, D>(src, dst, layouts, n, stream)));
}

void copy_strided(const void* src, ScalarType src_type, void* dst, ScalarType dst_type,
                  const StridedLayout* layouts, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  if (layout_is_contiguous(layouts[0]) && layout_is_contiguous(layouts[1])) {
    if (src_type == dst_type) {
      MMS_CUDA_CHECK(cudaMemcpyAsync(dst, src, size_t(n) * scalar_type_size(src_type),
                                     cudaMemcpyDeviceToDevice, stream));
      return;
    }
    convert_contiguous(src, src_type, dst, dst_type, n, stream);
    return;
  }
  StridedLayout vec_layouts[2];
  if (vector_layouts(layouts, src, src_type, dst, dst_type, vec_layouts)) {
    MMS_CUDA_DISPATCH_TYPE(src_type, S, MMS_CUDA_DISPATCH_TYPE(dst_type, D,
        launch_copy_vec<S, D>(src, dst, vec_layouts, n / kVec, stream)));
    return;
  }
  copy_strided_naive(src, src_type, dst, dst_type, layouts, n, stream);
}

void fill(void* dst, ScalarType type, int64_t n, double value, cudaStream_t stream) {
  if (n == 0) return;
  MMS_CUDA_DISPATCH_TYPE(type, D,
      fill_value_kernel<D><<<grid_for(n, kThreads), kThreads, 0, stream>>>(static_cast<Storage<D>*>(dst), n, value));
  MMS_CUDA_LAUNCH_CHECK();
}

void arange(void* dst, ScalarType type, int64_t n, double start, double step, cudaStream_t stream) {
  if (n == 0) return;
  MMS_CUDA_DISPATCH_TYPE(type, D,
      arange_kernel<D><<<grid_for(n, kThreads), kThreads, 0, stream>>>(static_cast<Storage<D>*>(dst), n, start,
                                                                        step));
  MMS_CUDA_LAUNCH_CHECK();
}

}  // namespace mms::cuda
