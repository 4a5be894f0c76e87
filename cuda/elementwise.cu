// elementwise.cu: unary maps (and their derivatives), binary ops and where.
//
// Shapes: out is contiguous with n elements; each input is described by strides over
// out's shape (stride 0 = broadcast), after coalescing adjacent dims (cuda/common.h).
//
// Algorithm: one thread per element in a grid-stride loop. Generic path: turn the flat
// output index into per-operand offsets (one div/mod per coalesced dim). Fast path, when
// every operand is contiguous and 16-byte aligned: each thread moves a float4, and the
// n % 4 last elements go to a one-block scalar tail kernel. The float4 path covers unary
// forward, float32 binary arithmetic, and unary backward (grad_in from grad_out and x:
// all three contiguous and 16-byte aligned; quick_gelu's backward in a training step).
// A broadcast or transposed operand, or a view starting mid-float4, takes the generic path.
//
// Floor: memory bound. Unary f32 moves 8 bytes per element, binary and unary backward 12:
// at ~3 TB/s (H100 SXM HBM3) 400x768 floats take ~0.8 us (launch latency dominates);
// 32*4*77 x 3072 GELU (30.3M elements, 242 MB) ~ 80 us, its backward (363 MB) ~ 120 us.
//
// bf16 (autocast's bf16 activations: the MLP's activation and its backward): the same
// unary kernels, templated on how an element is stored (Float32Elements,
// BFloat16Elements): float32 math between a bf16 load and a rounded bf16 store; four
// elements per thread as one 8-byte word when contiguous and aligned. Floor: half the
// float32 bytes.
//
// Variants: *_naive = the generic strided kernel always; the tuned entry points take the
// float4 path when they can (what changed: 4x fewer, 16-byte memory transactions per
// thread, and no offset arithmetic; measured in bench/kernels).
#include "cuda/check.h"
#include "cuda/device_utils.cuh"
#include "cuda/elementwise.h"

namespace mms::cuda {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

__device__ __forceinline__ float unary_value(UnaryKind op, float x, float alpha, float beta) {
  switch (op) {
    case UnaryKind::Neg: return -x;
    case UnaryKind::Exp: return expf(x);
    case UnaryKind::Log: return logf(x);
    case UnaryKind::Log1p: return log1pf(x);
    case UnaryKind::Sqrt: return sqrtf(x);
    case UnaryKind::Rsqrt: return 1.0f / sqrtf(x);  // rsqrtf is 2 ulp; keep parity with the CPU
    case UnaryKind::Abs: return fabsf(x);
    case UnaryKind::Sign: return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : (x == 0.0f ? 0.0f : x));
    case UnaryKind::Reciprocal: return 1.0f / x;
    case UnaryKind::Square: return x * x;
    case UnaryKind::Tanh: return tanhf(x);
    case UnaryKind::Sigmoid: return sigmoid(x);
    case UnaryKind::Relu: return x > 0.0f ? x : (x != x ? x : 0.0f);
    case UnaryKind::GeluErf: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case UnaryKind::GeluTanh: {
      const float inner = 0.79788456080286536f * (x + 0.044715f * x * x * x);
      return 0.5f * x * (1.0f + tanhf(inner));
    }
    case UnaryKind::QuickGelu: return x * sigmoid(1.702f * x);
    case UnaryKind::AddScalar: return x + alpha;
    case UnaryKind::MulScalar: return x * alpha;
    case UnaryKind::PowScalar: return powf(x, alpha);
    case UnaryKind::RSubScalar: return alpha - x;
    case UnaryKind::RDivScalar: return alpha / x;
    case UnaryKind::Clamp: return fminf(fmaxf(x, alpha), beta);
  }
  return x;
}

// d op(x) / dx, times the incoming gradient g.
__device__ __forceinline__ float unary_grad(UnaryKind op, float g, float x, float alpha, float beta) {
  switch (op) {
    case UnaryKind::Neg: return -g;
    case UnaryKind::Exp: return g * expf(x);
    case UnaryKind::Log: return g / x;
    case UnaryKind::Log1p: return g / (1.0f + x);
    case UnaryKind::Sqrt: return g * 0.5f / sqrtf(x);
    case UnaryKind::Rsqrt: return g * -0.5f / (x * sqrtf(x));
    case UnaryKind::Abs: return x > 0.0f ? g : (x < 0.0f ? -g : 0.0f);
    case UnaryKind::Sign: return 0.0f;
    case UnaryKind::Reciprocal: return -g / (x * x);
    case UnaryKind::Square: return 2.0f * x * g;
    case UnaryKind::Tanh: {
      const float t = tanhf(x);
      return g * (1.0f - t * t);
    }
    case UnaryKind::Sigmoid: {
      const float s = sigmoid(x);
      return g * s * (1.0f - s);
    }
    case UnaryKind::Relu: return x > 0.0f ? g : 0.0f;
    case UnaryKind::GeluErf: {
      const float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
      const float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
      return g * (cdf + x * pdf);
    }
    case UnaryKind::GeluTanh: {
      const float k = 0.79788456080286536f;
      const float t = tanhf(k * (x + 0.044715f * x * x * x));
      const float inner_grad = k * (1.0f + 3.0f * 0.044715f * x * x);
      return g * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * inner_grad);
    }
    case UnaryKind::QuickGelu: {
      const float s = sigmoid(1.702f * x);
      return g * (s + 1.702f * x * s * (1.0f - s));
    }
    case UnaryKind::AddScalar: return g;
    case UnaryKind::MulScalar: return g * alpha;
    case UnaryKind::PowScalar: return g * alpha * powf(x, alpha - 1.0f);
    case UnaryKind::RSubScalar: return -g;
    case UnaryKind::RDivScalar: return -g * alpha / (x * x);
    case UnaryKind::Clamp: return (x >= alpha && x <= beta) ? g : 0.0f;
  }
  return g;
}

// How the unary kernels load and store one element type, computing in float32 either way:
// float32 as itself, four per float4 (16 bytes); bf16 (autocast's bf16 activations) as
// bit patterns widened to float and rounded once on the store, four per 8-byte word
// (uint2; element 0 in the low half of .x, little endian) -- the CPU's bf16 path
// computes exactly this (tensor/cpu/elementwise.cpp).
struct Float32Elements {
  using Scalar = float;
  using Vector4 = float4;
  static constexpr uintptr_t kVectorBytes = 16;
  __device__ static float load(float v) { return v; }
  __device__ static float store(float v) { return v; }
  __device__ static void unpack(const float4& v, float (&out)[4]) {
    out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
  }
  __device__ static float4 pack(const float (&in)[4]) { return make_float4(in[0], in[1], in[2], in[3]); }
};

struct BFloat16Elements {
  using Scalar = uint16_t;
  using Vector4 = uint2;
  static constexpr uintptr_t kVectorBytes = 8;
  __device__ static float load(uint16_t v) { return bf16_bits_to_float(v); }
  __device__ static uint16_t store(float v) { return float_to_bf16_bits(v); }
  __device__ static void unpack(const uint2& v, float (&out)[4]) {
    out[0] = load(uint16_t(v.x & 0xffffu)), out[1] = load(uint16_t(v.x >> 16));
    out[2] = load(uint16_t(v.y & 0xffffu)), out[3] = load(uint16_t(v.y >> 16));
  }
  __device__ static uint2 pack(const float (&in)[4]) {
    return make_uint2(uint32_t(store(in[0])) | (uint32_t(store(in[1])) << 16),
                      uint32_t(store(in[2])) | (uint32_t(store(in[3])) << 16));
  }
};

template <typename E>
__global__ void unary_strided_kernel(UnaryKind op, const typename E::Scalar* __restrict__ x,
                                     typename E::Scalar* __restrict__ out, OffsetCalculator<2> calc, int64_t n,
                                     float alpha, float beta) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t offsets[2];
    calc.offsets(i, offsets);
    out[offsets[0]] = E::store(unary_value(op, E::load(x[offsets[1]]), alpha, beta));
  }
}

template <typename E>
__global__ void unary_vec4_kernel(UnaryKind op, const typename E::Vector4* __restrict__ x,
                                  typename E::Vector4* __restrict__ out, int64_t n4, float alpha, float beta) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4;
       i += int64_t(gridDim.x) * blockDim.x) {
    float v[4];
    E::unpack(x[i], v);
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = unary_value(op, v[j], alpha, beta);
    out[i] = E::pack(v);
  }
}

// Scalar tail of a contiguous range [start, n).
template <typename E>
__global__ void unary_tail_kernel(UnaryKind op, const typename E::Scalar* __restrict__ x,
                                  typename E::Scalar* __restrict__ out, int64_t start, int64_t n, float alpha,
                                  float beta) {
  const int64_t i = start + threadIdx.x;
  if (i < n) out[i] = E::store(unary_value(op, E::load(x[i]), alpha, beta));
}

template <typename E>
__global__ void unary_backward_kernel(UnaryKind op, const typename E::Scalar* __restrict__ grad_out,
                                      const typename E::Scalar* __restrict__ x, typename E::Scalar* __restrict__ grad_in,
                                      OffsetCalculator<3> calc, int64_t n, float alpha, float beta) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t offsets[3];
    calc.offsets(i, offsets);
    grad_in[offsets[0]] = E::store(unary_grad(op, E::load(grad_out[offsets[1]]), E::load(x[offsets[2]]), alpha, beta));
  }
}

template <typename E>
__global__ void unary_backward_vec4_kernel(UnaryKind op, const typename E::Vector4* __restrict__ grad_out,
                                           const typename E::Vector4* __restrict__ x,
                                           typename E::Vector4* __restrict__ grad_in, int64_t n4, float alpha,
                                           float beta) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4;
       i += int64_t(gridDim.x) * blockDim.x) {
    float g[4], v[4];
    E::unpack(grad_out[i], g);
    E::unpack(x[i], v);
#pragma unroll
    for (int j = 0; j < 4; ++j) g[j] = unary_grad(op, g[j], v[j], alpha, beta);
    grad_in[i] = E::pack(g);
  }
}

// Scalar tail of a contiguous range [start, n).
template <typename E>
__global__ void unary_backward_tail_kernel(UnaryKind op, const typename E::Scalar* __restrict__ grad_out,
                                           const typename E::Scalar* __restrict__ x,
                                           typename E::Scalar* __restrict__ grad_in, int64_t start, int64_t n,
                                           float alpha, float beta) {
  const int64_t i = start + threadIdx.x;
  if (i < n) grad_in[i] = E::store(unary_grad(op, E::load(grad_out[i]), E::load(x[i]), alpha, beta));
}

bool aligned16(const void* pointer) { return (reinterpret_cast<uintptr_t>(pointer) & 15u) == 0; }


// ---- binary -----------------------------------------------------------------------
template <typename T>
__device__ __forceinline__ T arithmetic(BinaryKind op, T a, T b) {
  switch (op) {
    case BinaryKind::Add: return a + b;
    case BinaryKind::Sub: return a - b;
    case BinaryKind::Mul: return a * b;
    case BinaryKind::Maximum: return a > b ? a : b;
    case BinaryKind::Minimum: return a < b ? a : b;
    default: return T(0);  // Div/Pow: float only (checked on the host)
  }
}

__device__ __forceinline__ float arithmetic(BinaryKind op, float a, float b) {
  switch (op) {
    case BinaryKind::Add: return a + b;
    case BinaryKind::Sub: return a - b;
    case BinaryKind::Mul: return a * b;
    case BinaryKind::Div: return a / b;
    case BinaryKind::Pow: return powf(a, b);
    case BinaryKind::Maximum: return nan_max(a, b);
    case BinaryKind::Minimum: return nan_min(a, b);
    default: return 0.0f;
  }
}

template <typename T>
__device__ __forceinline__ bool compare(BinaryKind op, T a, T b) {
  switch (op) {
    case BinaryKind::Eq: return a == b;
    case BinaryKind::Ne: return a != b;
    case BinaryKind::Lt: return a < b;
    case BinaryKind::Le: return a <= b;
    case BinaryKind::Gt: return a > b;
    case BinaryKind::Ge: return a >= b;
    default: return false;
  }
}

template <typename T>
__global__ void binary_strided_kernel(BinaryKind op, const T* __restrict__ a, const T* __restrict__ b,
                                      T* __restrict__ out, OffsetCalculator<3> calc, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t offsets[3];
    calc.offsets(i, offsets);
    out[offsets[0]] = arithmetic(op, a[offsets[1]], b[offsets[2]]);
  }
}

template <typename T>
__global__ void compare_strided_kernel(BinaryKind op, const T* __restrict__ a, const T* __restrict__ b,
                                       uint8_t* __restrict__ out, OffsetCalculator<3> calc, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t offsets[3];
    calc.offsets(i, offsets);
    out[offsets[0]] = compare(op, a[offsets[1]], b[offsets[2]]) ? 1 : 0;
  }
}

__global__ void binary_vec4_kernel(BinaryKind op, const float4* __restrict__ a,
                                   const float4* __restrict__ b, float4* __restrict__ out,
                                   int64_t n4) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float4 x = a[i];
    const float4 y = b[i];
    out[i] = make_float4(arithmetic(op, x.x, y.x), arithmetic(op, x.y, y.y),
                         arithmetic(op, x.z, y.z), arithmetic(op, x.w, y.w));
  }
}

__global__ void binary_tail_kernel(BinaryKind op, const float* __restrict__ a,
                                   const float* __restrict__ b, float* __restrict__ out,
                                   int64_t start, int64_t n) {
  const int64_t i = start + threadIdx.x;
  if (i < n) out[i] = arithmetic(op, a[i], b[i]);
}

template <typename T>
void launch_binary(BinaryKind op, const void* a, const void* b, void* out,
                   const StridedLayout* layouts, int64_t n, cudaStream_t stream) {
  const auto calc = make_offset_calculator<3>(layouts);
  if (is_comparison(op)) {
    compare_strided_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream>>>(
        op, static_cast<const T*>(a), static_cast<const T*>(b), static_cast<uint8_t*>(out), calc, n);
  } else {
    binary_strided_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream>>>(
        op, static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(out), calc, n);
  }
  MMS_CUDA_LAUNCH_CHECK();
}

// ---- where ------------------------------------------------------------------------
template <typename Word>
__global__ void where_kernel(const uint8_t* __restrict__ cond, const Word* __restrict__ a,
                             const Word* __restrict__ b, Word* __restrict__ out,
                             OffsetCalculator<4> calc, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t offsets[4];
    calc.offsets(i, offsets);
    out[offsets[0]] = cond[offsets[1]] != 0 ? a[offsets[2]] : b[offsets[3]];
  }
}

}  // namespace

namespace {
// Whether every pointer can be read as E's 4-element vector.
template <typename E, typename... Pointers>
bool vector_aligned(Pointers... pointers) {
  return ((reinterpret_cast<uintptr_t>(pointers) % E::kVectorBytes == 0) && ...);
}

template <typename E>
void unary_strided(UnaryKind op, const typename E::Scalar* x, typename E::Scalar* out, const StridedLayout* layouts,
                   int64_t n, float alpha, float beta, cudaStream_t stream) {
  if (n == 0) return;
  unary_strided_kernel<E><<<grid_for(n, kThreads), kThreads, 0, stream>>>(
      op, x, out, make_offset_calculator<2>(layouts), n, alpha, beta);
  MMS_CUDA_LAUNCH_CHECK();
}

// Four elements per thread when contiguous and aligned (then the n % 4 last ones one
// thread each), the strided kernel otherwise.
template <typename E>
void unary_tuned(UnaryKind op, const typename E::Scalar* x, typename E::Scalar* out, const StridedLayout* layouts,
                 int64_t n, float alpha, float beta, cudaStream_t stream) {
  if (n == 0) return;
  const bool contiguous = layout_is_contiguous(layouts[0]) && layout_is_contiguous(layouts[1]);
  if (!contiguous || !vector_aligned<E>(x, out)) {
    unary_strided<E>(op, x, out, layouts, n, alpha, beta, stream);
    return;
  }
  using V = typename E::Vector4;
  const int64_t n4 = n / 4;
  if (n4 > 0) {
    unary_vec4_kernel<E><<<grid_for(n4, kThreads), kThreads, 0, stream>>>(
        op, reinterpret_cast<const V*>(x), reinterpret_cast<V*>(out), n4, alpha, beta);
    MMS_CUDA_LAUNCH_CHECK();
  }
  if (n4 * 4 < n) {
    unary_tail_kernel<E><<<1, 4, 0, stream>>>(op, x, out, n4 * 4, n, alpha, beta);
    MMS_CUDA_LAUNCH_CHECK();
  }
}

template <typename E>
void unary_backward_strided(UnaryKind op, const typename E::Scalar* grad_out, const typename E::Scalar* x,
                            typename E::Scalar* grad_in, const StridedLayout* layouts, int64_t n, float alpha,
                            float beta, cudaStream_t stream) {
  if (n == 0) return;
  unary_backward_kernel<E><<<grid_for(n, kThreads), kThreads, 0, stream>>>(
      op, grad_out, x, grad_in, make_offset_calculator<3>(layouts), n, alpha, beta);
  MMS_CUDA_LAUNCH_CHECK();
}

template <typename E>
void unary_backward_tuned(UnaryKind op, const typename E::Scalar* grad_out, const typename E::Scalar* x,
                          typename E::Scalar* grad_in, const StridedLayout* layouts, int64_t n, float alpha,
                          float beta, cudaStream_t stream) {
  if (n == 0) return;
  const bool contiguous = layout_is_contiguous(layouts[0]) && layout_is_contiguous(layouts[1]) &&
                          layout_is_contiguous(layouts[2]);
  if (!contiguous || !vector_aligned<E>(grad_out, x, grad_in)) {
    unary_backward_strided<E>(op, grad_out, x, grad_in, layouts, n, alpha, beta, stream);
    return;
  }
  using V = typename E::Vector4;
  const int64_t n4 = n / 4;
  if (n4 > 0) {
    unary_backward_vec4_kernel<E><<<grid_for(n4, kThreads), kThreads, 0, stream>>>(
        op, reinterpret_cast<const V*>(grad_out), reinterpret_cast<const V*>(x), reinterpret_cast<V*>(grad_in), n4,
        alpha, beta);
    MMS_CUDA_LAUNCH_CHECK();
  }
  if (n4 * 4 < n) {  // the n % 4 < 4 last elements: one thread each
    unary_backward_tail_kernel<E><<<1, 4, 0, stream>>>(op, grad_out, x, grad_in, n4 * 4, n, alpha, beta);
    MMS_CUDA_LAUNCH_CHECK();
  }
}
}  // namespace

void unary_f32_naive(UnaryKind op, const float* x, float* out, const StridedLayout* layouts,
                     int64_t n, float alpha, float beta, cudaStream_t stream) {
  unary_strided<Float32Elements>(op, x, out, layouts, n, alpha, beta, stream);
}

void unary_f32(UnaryKind op, const float* x, float* out, const StridedLayout* layouts, int64_t n,
               float alpha, float beta, cudaStream_t stream) {
  unary_tuned<Float32Elements>(op, x, out, layouts, n, alpha, beta, stream);
}

void unary_bf16(UnaryKind op, const uint16_t* x, uint16_t* out, const StridedLayout* layouts, int64_t n, float alpha,
                float beta, cudaStream_t stream) {
  unary_tuned<BFloat16Elements>(op, x, out, layouts, n, alpha, beta, stream);
}

void unary_backward_f32_naive(UnaryKind op, const float* grad_out, const float* x, float* grad_in,
                              const StridedLayout* layouts, int64_t n, float alpha, float beta,
                              cudaStream_t stream) {
  unary_backward_strided<Float32Elements>(op, grad_out, x, grad_in, layouts, n, alpha, beta, stream);
}

void unary_backward_f32(UnaryKind op, const float* grad_out, const float* x, float* grad_in,
                        const StridedLayout* layouts, int64_t n, float alpha, float beta,
                        cudaStream_t stream) {
  unary_backward_tuned<Float32Elements>(op, grad_out, x, grad_in, layouts, n, alpha, beta, stream);
}

void unary_backward_bf16(UnaryKind op, const uint16_t* grad_out, const uint16_t* x, uint16_t* grad_in,
                         const StridedLayout* layouts, int64_t n, float alpha, float beta, cudaStream_t stream) {
  unary_backward_tuned<BFloat16Elements>(op, grad_out, x, grad_in, layouts, n, alpha, beta, stream);
}

void binary_f32_naive(BinaryKind op, const float* a, const float* b, float* out,
                      const StridedLayout* layouts, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  launch_binary<float>(op, a, b, out, layouts, n, stream);
}

void binary(BinaryKind op, ScalarType type, const void* a, const void* b, void* out,
            const StridedLayout* layouts, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  const bool integer_type = type != ScalarType::Float32;
  MMS_CUDA_REQUIRE(!(integer_type && (op == BinaryKind::Div || op == BinaryKind::Pow)),
                   "binary: Div and Pow are float32-only on CUDA");
  switch (type) {
    case ScalarType::Float32: {
      const bool contiguous = layout_is_contiguous(layouts[0]) && layout_is_contiguous(layouts[1]) &&
                              layout_is_contiguous(layouts[2]);
      if (!is_comparison(op) && contiguous && aligned16(a) && aligned16(b) && aligned16(out)) {
        const int64_t n4 = n / 4;
        const auto* fa = static_cast<const float*>(a);
        const auto* fb = static_cast<const float*>(b);
        auto* fo = static_cast<float*>(out);
        if (n4 > 0) {
          binary_vec4_kernel<<<grid_for(n4, kThreads), kThreads, 0, stream>>>(
              op, reinterpret_cast<const float4*>(fa), reinterpret_cast<const float4*>(fb),
              reinterpret_cast<float4*>(fo), n4);
          MMS_CUDA_LAUNCH_CHECK();
        }
        if (n4 * 4 < n) {
          binary_tail_kernel<<<1, 4, 0, stream>>>(op, fa, fb, fo, n4 * 4, n);
          MMS_CUDA_LAUNCH_CHECK();
        }
        return;
      }
      launch_binary<float>(op, a, b, out, layouts, n, stream);
      return;
    }
    case ScalarType::Int64: launch_binary<int64_t>(op, a, b, out, layouts, n, stream); return;
    case ScalarType::Int32: launch_binary<int32_t>(op, a, b, out, layouts, n, stream); return;
    case ScalarType::UInt8:
    case ScalarType::Bool: launch_binary<uint8_t>(op, a, b, out, layouts, n, stream); return;
    default: MMS_CUDA_REQUIRE(false, "binary: unsupported element type on CUDA");
  }
}

void where(const uint8_t* cond, const void* a, const void* b, void* out, size_t element_size,
           const StridedLayout* layouts, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  const auto calc = make_offset_calculator<4>(layouts);
  const unsigned grid = grid_for(n, kThreads);
  switch (element_size) {
    case 1:
      where_kernel<uint8_t><<<grid, kThreads, 0, stream>>>(cond, static_cast<const uint8_t*>(a),
          static_cast<const uint8_t*>(b), static_cast<uint8_t*>(out), calc, n);
      break;
    case 2:
      where_kernel<uint16_t><<<grid, kThreads, 0, stream>>>(cond, static_cast<const uint16_t*>(a),
          static_cast<const uint16_t*>(b), static_cast<uint16_t*>(out), calc, n);
      break;
    case 4:
      where_kernel<uint32_t><<<grid, kThreads, 0, stream>>>(cond, static_cast<const uint32_t*>(a),
          static_cast<const uint32_t*>(b), static_cast<uint32_t*>(out), calc, n);
      break;
    case 8:
      where_kernel<uint64_t><<<grid, kThreads, 0, stream>>>(cond, static_cast<const uint64_t*>(a),
          static_cast<const uint64_t*>(b), static_cast<uint64_t*>(out), calc, n);
      break;
    default: MMS_CUDA_REQUIRE(false, "where: element size must be 1, 2, 4 or 8 bytes");
  }
  MMS_CUDA_LAUNCH_CHECK();
}

}  // namespace mms::cuda
