// The AVX2+FMA build of the Eigen GEMM (8-wide FMA). Real only when CMake compiles this
// one file with -mavx2 -mfma; the body is gemm_variant.inl.
#include "tensor/cpu/gemm_kernel.h"

#define MMS_GEMM_VARIANT avx2
#define MMS_GEMM_EIGEN_NAMESPACE mms_eigen_avx2
#if defined(__AVX2__) && defined(__FMA__)
#define MMS_GEMM_ISA_COMPILED 1
#else
#define MMS_GEMM_ISA_COMPILED 0
#endif
#include "tensor/cpu/gemm_variant.inl"
