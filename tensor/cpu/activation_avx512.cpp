// The AVX-512 build of quick_gelu and its derivative (see activation_kernel.h; the body is
// activation_packet.inl, shared with the AVX2 build, and gives the same bits 16 at a time
// instead of 8). Real only when the build compiles this file with AVX-512 (CMakeLists.txt,
// beside sgemm_avx512.cpp); otherwise compiled() is false.
#include "tensor/cpu/activation_kernel.h"

#if defined(__AVX512F__) && defined(__AVX512DQ__)
#define MMS_ACTIVATION_COMPILED 1
#else
#define MMS_ACTIVATION_COMPILED 0
#endif
#define MMS_ACTIVATION_NAMESPACE mms::cpu::activation::avx512
#define MMS_ACTIVATION_PACKET Eigen::internal::Packet16f
#define Eigen mms_eigen_avx512_activation
#include "tensor/cpu/activation_packet.inl"
