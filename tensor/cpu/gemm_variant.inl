// One SIMD build of the Eigen GEMM (see gemm_kernel.h), shared by gemm_avx2.cpp and
// gemm_avx512.cpp. The including file defines:
//   MMS_GEMM_VARIANT          the namespace inside mms::cpu::gemm (avx2, avx512)
//   MMS_GEMM_EIGEN_NAMESPACE  what Eigen is renamed to in this file
//   MMS_GEMM_ISA_COMPILED     1 when the compiler flags give this file the ISA
// The build is real only when CMake gives the file its flags (CMakeLists.txt:
// set_source_files_properties); otherwise compiled() reports false and bmm picks
// another build.
//
// Eigen is renamed to its own namespace so these template instances cannot be merged by
// the linker with the baseline instances used everywhere else (a merged instance could
// hand AVX-512 code to a CPU without it).

#if MMS_GEMM_ISA_COMPILED

#define Eigen MMS_GEMM_EIGEN_NAMESPACE
#define EIGEN_DONT_PARALLELIZE  // bmm threads itself (gemm_eigen.inl)
#include <Eigen/Core>

namespace mms::cpu::gemm::MMS_GEMM_VARIANT {
bool compiled() { return true; }
#include "tensor/cpu/gemm_eigen.inl"
}  // namespace mms::cpu::gemm::MMS_GEMM_VARIANT

#undef Eigen

#else

#include <cstdlib>

namespace mms::cpu::gemm::MMS_GEMM_VARIANT {
bool compiled() { return false; }
// Never called: gemm.cpp checks compiled() first.
void bmm(const float*, const float*, float*, const GemmProblem&, float, float) { std::abort(); }
void bmm(const double*, const double*, double*, const GemmProblem&, double, double) {
  std::abort();
}
}  // namespace mms::cpu::gemm::MMS_GEMM_VARIANT

#endif
