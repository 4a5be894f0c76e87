// CLIP's activation, quick_gelu(x) = x * sigmoid(1.702 x), over contiguous float32 arrays
// with 8-wide AVX2+FMA arithmetic (activation_avx2.cpp) or 16-wide AVX-512
// (activation_avx512.cpp; the same bits per element), picked at run time by
// CpuBackend::unary / unary_backward: the widest the CPU runs.
//
// Why a separate build: the scalar kernel calls libm's expf once per element, which
// the compiler cannot vectorise; in a ViT-B/32 forward that was ~10% of the time (perf:
// expf and the map_unary loop around it) for 3% of the arithmetic. Eigen's vectorised
// exp (a Cephes-style polynomial, within a couple of ulp of expf) computes eight at once.
// Like gemm_kernel.h this header is plain C++ so the AVX2 file compiles only the kernel.
#pragma once

#include <cstdint>

namespace mms::cpu::activation::avx2 {

// True when the build compiled the AVX2+FMA kernels (the CPU check is the caller's).
bool compiled();
// y[i] = x[i] * sigmoid(1.702 x[i])
void quick_gelu(const float* x, float* y, int64_t n);
// grad_x[i] = grad_y[i] * (s + 1.702 x[i] s (1 - s)), s = sigmoid(1.702 x[i])
void quick_gelu_backward(const float* grad_y, const float* x, float* grad_x, int64_t n);

}  // namespace mms::cpu::activation::avx2

namespace mms::cpu::activation::avx512 {

// The same three functions, 16 floats at a time (true only in an AVX-512 build).
bool compiled();
void quick_gelu(const float* x, float* y, int64_t n);
void quick_gelu_backward(const float* grad_y, const float* x, float* grad_x, int64_t n);

}  // namespace mms::cpu::activation::avx512
