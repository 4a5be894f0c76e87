// Elementwise kernels: unary maps, their derivatives, binary ops and where, with
// NumPy broadcasting expressed as strides (0 along broadcast dims).
//
// Every input layout here has the output's (coalesced) shape; the output is contiguous
// with numel n. Build the layouts with coalesce_layouts over {out, inputs...} so that
// layout[0] is the output's.
#pragma once

#include <cstdint>

#include "cuda/common.h"

namespace mms::cuda {

// Same members and order as mms::UnaryOp / mms::BinaryOp (the glue static_asserts it).
enum class UnaryKind : uint8_t {
  Neg, Exp, Log, Log1p, Sqrt, Rsqrt, Abs, Sign, Reciprocal, Square,
  Tanh, Sigmoid, Relu, GeluErf, GeluTanh, QuickGelu,
  AddScalar, MulScalar, PowScalar, RSubScalar, RDivScalar, Clamp,
};
enum class BinaryKind : uint8_t {
  Add, Sub, Mul, Div, Pow, Maximum, Minimum,
  Eq, Ne, Lt, Le, Gt, Ge,
};

inline bool is_comparison(BinaryKind op) { return op >= BinaryKind::Eq; }

// out = op(x). layouts = {out, x}. Tuned: float4 loads/stores when x and out are
// contiguous and 16-byte aligned; otherwise the generic strided kernel.
void unary_f32(UnaryKind op, const float* x, float* out, const StridedLayout* layouts, int64_t n,
               float alpha, float beta, cudaStream_t stream);
// The same with the generic strided kernel always (the lesson's baseline).
void unary_f32_naive(UnaryKind op, const float* x, float* out, const StridedLayout* layouts,
                     int64_t n, float alpha, float beta, cudaStream_t stream);

// grad_in = grad_out * d op(x)/dx. layouts = {grad_in, grad_out, x}. Tuned: float4
// loads/stores when all three are contiguous and 16-byte aligned; otherwise the generic
// strided kernel.
void unary_backward_f32(UnaryKind op, const float* grad_out, const float* x, float* grad_in,
                        const StridedLayout* layouts, int64_t n, float alpha, float beta,
                        cudaStream_t stream);
// The same with the generic strided kernel always (the lesson's baseline).
void unary_backward_f32_naive(UnaryKind op, const float* grad_out, const float* x, float* grad_in,
                              const StridedLayout* layouts, int64_t n, float alpha, float beta,
                              cudaStream_t stream);

// The same two for bf16 x, out, grad_out and grad_in (bit patterns): float32 math, each
// result rounded once (autocast's bf16 activations). Four elements per thread as one
// 8-byte word when every operand is contiguous and 8-byte aligned.
void unary_bf16(UnaryKind op, const uint16_t* x, uint16_t* out, const StridedLayout* layouts, int64_t n, float alpha,
                float beta, cudaStream_t stream);
void unary_backward_bf16(UnaryKind op, const uint16_t* grad_out, const uint16_t* x, uint16_t* grad_in,
                         const StridedLayout* layouts, int64_t n, float alpha, float beta, cudaStream_t stream);

// out = a op b for a, b of `type` (Float32, Int64, Int32, UInt8 or Bool); out has `type`,
// or Bool (one byte 0/1) for comparisons. layouts = {out, a, b}. Integer Div and Pow are
// rejected (their rounding rules are not an engine contract).
void binary(BinaryKind op, ScalarType type, const void* a, const void* b, void* out,
            const StridedLayout* layouts, int64_t n, cudaStream_t stream);
// The float32 lesson's baseline: generic strided kernel, no vector loads.
void binary_f32_naive(BinaryKind op, const float* a, const float* b, float* out,
                      const StridedLayout* layouts, int64_t n, cudaStream_t stream);

// out = cond ? a : b, any element type of `element_size` bytes (1, 2, 4 or 8); cond is one
// byte per element (Bool/UInt8, nonzero = true). layouts = {out, cond, a, b}.
void where(const uint8_t* cond, const void* a, const void* b, void* out, size_t element_size,
           const StridedLayout* layouts, int64_t n, cudaStream_t stream);

}  // namespace mms::cuda
