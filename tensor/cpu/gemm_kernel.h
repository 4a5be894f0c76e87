// The Eigen GEMM loop behind CpuBackend::bmm, compiled twice: once for the baseline
// x86-64 ISA (gemm.cpp) and once with AVX2+FMA (gemm_avx2.cpp, when the build gives
// that file -mavx2 -mfma), picked at run time by what the CPU supports. Eigen chooses
// its SIMD kernels from compile-time macros only, so a second build of the same source
// is the way to get 8-wide FMA GEMM (~2.5x) while the library still runs on any x86-64.
//
// This header is plain C++ (no Eigen, no Tensor) so the AVX2 file compiles nothing but
// the kernel: inline code shared with the rest of the library must not be built with
// AVX2, or the linker could hand the AVX2 copy to a CPU without it.
#pragma once

#include <cstdint>

#include "tensor/cpu/parallel.h"  // plain C++, no Eigen and no Tensor

namespace mms::cpu::gemm {

// Stored shapes: a [M, K] ([K, M] when trans_a), b [K, N] ([N, K] when trans_b), c [M, N],
// for each of `batches`; a_step / b_step are the element strides between batches (0
// broadcasts a batch of 1). threads: how many OpenMP threads the call may use (1 =
// serial); the kernel splits the batch, or each GEMM's rows or columns, among them.
struct GemmProblem {
  int64_t batches, m, n, k, a_step, b_step;
  bool trans_a, trans_b;
  int threads;
};

// Which build bmm runs: "avx2+fma" or "baseline" (for benchmarks and logs).
const char* isa_in_use();

namespace portable {
void bmm(const float* a, const float* b, float* c, const GemmProblem& p, float alpha, float beta);
void bmm(const double* a, const double* b, double* c, const GemmProblem& p, double alpha,
         double beta);
}  // namespace portable

namespace avx2 {
// True when this build compiled the AVX2+FMA variant (the CPU check is separate).
bool compiled();
void bmm(const float* a, const float* b, float* c, const GemmProblem& p, float alpha, float beta);
void bmm(const double* a, const double* b, double* c, const GemmProblem& p, double alpha,
         double beta);
}  // namespace avx2

}  // namespace mms::cpu::gemm
