// The Eigen GEMM loop behind CpuBackend::bmm, compiled three times: for the baseline
// x86-64 ISA (gemm.cpp), with AVX2+FMA (gemm_avx2.cpp) and with AVX-512
// (gemm_avx512.cpp), the last two only when the build gives those files their flags;
// the widest one the CPU supports runs. Eigen chooses its SIMD kernels from compile-time
// macros only, so another build of the same source is the way to get 8-wide FMA GEMM
// (~2.5x over SSE2) or 16-wide (~1.5x over AVX2 on a CPU with two 512-bit FMA units)
// while the library still runs on any x86-64.
//
// This header is plain C++ (no Eigen, no Tensor) so the SIMD files compile nothing but
// the kernel: inline code shared with the rest of the library must not be built with
// AVX2 or AVX-512, or the linker could hand that copy to a CPU without it.
#pragma once

#include <cstdint>

#include "tensor/cpu/parallel.h"  // plain C++, no Eigen and no Tensor

namespace mms::cpu::gemm {

// Stored shapes: a [M, K] ([K, M] when trans_a), b [K, N] ([N, K] when trans_b), c [M, N],
// for each of `batches`; a_step / b_step are the element strides between batches (0
// broadcasts a batch of 1). threads: how many OpenMP threads the call may use (1 =
// serial); the kernel splits the batch, or each GEMM's rows or columns, among them.
// lda / ldb / ldc: the element stride between stored rows of a, b and c (0: packed, i.e.
// the stored row length), so that a GEMM can read and write blocks of wider matrices in
// place (attention's heads inside the [B, L, H * D] projections); c's batch stride is
// m * ldc.
struct GemmProblem {
  int64_t batches, m, n, k, a_step, b_step;
  bool trans_a, trans_b;
  int threads;
  int64_t lda = 0, ldb = 0, ldc = 0;
};

// Which build bmm runs: "avx512" (float32: our kernel, sgemm_avx512.cpp, where it takes
// the shape, else Eigen's AVX-512 build), "avx512-eigen" (Eigen's only), "avx2+fma" or
// "baseline" (for benchmarks and logs). MMS_CPU_GEMM=baseline|avx2|avx512-eigen caps the
// choice (to compare builds like for like).
const char* isa_in_use();

// One row-major matrix operand of serial(): its first element and the element stride
// between its stored rows (a block of a wider matrix has the wider row length).
template <typename T>
struct RowsAt {
  T* data;
  int64_t stride;
};

// One GEMM on this thread, c = alpha op(a) op(b) + beta c (row-major, shapes as in
// GemmProblem with batches = 1, each operand with its own row stride), on the build bmm
// uses (gemm.cpp): for kernels that run many small products inside their own parallel
// region (CPU attention's heads, read and written where they lie in the projections).
void serial(RowsAt<const float> a, RowsAt<const float> b, RowsAt<float> c, int64_t m, int64_t n, int64_t k,
            bool trans_a, bool trans_b, float alpha, float beta);
void serial(RowsAt<const double> a, RowsAt<const double> b, RowsAt<double> c, int64_t m, int64_t n, int64_t k,
            bool trans_a, bool trans_b, double alpha, double beta);

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

namespace avx512 {
// True when this build compiled the AVX-512 variant (the CPU check is separate).
bool compiled();
void bmm(const float* a, const float* b, float* c, const GemmProblem& p, float alpha, float beta);
void bmm(const double* a, const double* b, double* c, const GemmProblem& p, double alpha,
         double beta);
}  // namespace avx512

// Our float32 AVX-512 GEMM (sgemm_avx512.cpp): 48 x 8 register tiles, for the large
// products (takes: whether it takes this shape; the rest stay with Eigen's build).
// bias (optional, [N]): added to every row of c in the same pass, c = alpha op(a) op(b)
// + beta c + bias (a linear layer's forward without a separate bias pass).
namespace avx512_sgemm {
bool compiled();
bool takes(const GemmProblem& p);
void bmm(const float* a, const float* b, float* c, const GemmProblem& p, float alpha, float beta,
         const float* bias = nullptr);
}  // namespace avx512_sgemm

}  // namespace mms::cpu::gemm
