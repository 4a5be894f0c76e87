// The AVX2+FMA build of the Eigen GEMM (see gemm_kernel.h). It is real only when the
// build compiles this one file with -mavx2 -mfma (CMake: set_source_files_properties(
// tensor/cpu/gemm_avx2.cpp PROPERTIES COMPILE_OPTIONS "-mavx2;-mfma")); otherwise it
// reports compiled() == false and bmm uses the portable build.
//
// Eigen is renamed to its own namespace here so its AVX2 template instances cannot be
// merged by the linker with the baseline instances used everywhere else.
#include "tensor/cpu/gemm_kernel.h"

#if defined(__AVX2__) && defined(__FMA__)

#define Eigen mms_eigen_avx2
#define EIGEN_DONT_PARALLELIZE  // bmm threads itself (gemm_eigen.inl)
#include <Eigen/Core>

namespace mms::cpu::gemm::avx2 {
bool compiled() { return true; }
#include "tensor/cpu/gemm_eigen.inl"
}  // namespace mms::cpu::gemm::avx2

#undef Eigen

#else

#include <cstdlib>

namespace mms::cpu::gemm::avx2 {
bool compiled() { return false; }
// Never called: gemm.cpp checks compiled() first.
void bmm(const float*, const float*, float*, const GemmProblem&, float, float) { std::abort(); }
void bmm(const double*, const double*, double*, const GemmProblem&, double, double) {
  std::abort();
}
}  // namespace mms::cpu::gemm::avx2

#endif
