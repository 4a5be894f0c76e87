// The AVX2+FMA build of quick_gelu and its derivative (see activation_kernel.h; the body
// is activation_packet.inl, shared with the AVX-512 build). Real only when the build
// compiles this file with -mavx2 -mfma (CMakeLists.txt, beside gemm_avx2.cpp); otherwise
// compiled() is false and the scalar kernels run.
#include "tensor/cpu/activation_kernel.h"

#if defined(__AVX2__) && defined(__FMA__)
#define MMS_ACTIVATION_COMPILED 1
#else
#define MMS_ACTIVATION_COMPILED 0
#endif
#define MMS_ACTIVATION_NAMESPACE mms::cpu::activation::avx2
#define MMS_ACTIVATION_PACKET Eigen::internal::Packet8f
#define Eigen mms_eigen_avx2_activation
#include "tensor/cpu/activation_packet.inl"
