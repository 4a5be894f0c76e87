// The AVX-512 build of the Eigen GEMM (16-wide FMA, 32 vector registers: Eigen's
// kernel then holds a 48 x 4 tile of C). Real only when CMake compiles this one file
// with -mavx512f -mavx512dq (and AVX2/FMA for the edges); the body is gemm_variant.inl.
// Measured on a 2-core Xeon with AVX-512 (Sapphire Rapids class), the ViT-B/32 linear
// shapes (400 x 768 x 2304 and the like, 2 threads): 206-220 GFLOP/s with the AVX2
// build, 315-326 with this one (docs/performance_cpu.md).
#include "tensor/cpu/gemm_kernel.h"

#define MMS_GEMM_VARIANT avx512
#define MMS_GEMM_EIGEN_NAMESPACE mms_eigen_avx512
#if defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__AVX2__) && defined(__FMA__)
#define MMS_GEMM_ISA_COMPILED 1
#else
#define MMS_GEMM_ISA_COMPILED 0
#endif
#include "tensor/cpu/gemm_variant.inl"
