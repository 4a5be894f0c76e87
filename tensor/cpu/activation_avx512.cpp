// The AVX-512 build of quick_gelu and its derivative (see activation_kernel.h; the body is
// activation_packet.inl, shared with the AVX2 build, and gives the same bits 16 at a time
// instead of 8). Real only when the build compiles this file with AVX-512 (CMakeLists.txt,
// beside sgemm_avx512.cpp); otherwise compiled() is false.
#include "tensor/cpu/activation_kernel.h"

#if defined(__AVX512F__) && defined(__AVX512DQ__)

// Eigen under a name of its own: its AVX-512 instances must not be merged with the
// baseline or AVX2 ones.
#define Eigen mms_eigen_avx512_activation
#include <Eigen/Core>

#define MMS_ACTIVATION_NAMESPACE mms::cpu::activation::avx512
#define MMS_ACTIVATION_PACKET Eigen::internal::Packet16f
#include "tensor/cpu/activation_packet.inl"
#undef MMS_ACTIVATION_PACKET
#undef MMS_ACTIVATION_NAMESPACE

#undef Eigen

#else

#include <cstdlib>

namespace mms::cpu::activation::avx512 {
bool compiled() { return false; }
// Never called: the caller checks compiled() first.
void quick_gelu(const float*, float*, int64_t) { std::abort(); }
void quick_gelu_backward(const float*, const float*, float*, int64_t) { std::abort(); }
}  // namespace mms::cpu::activation::avx512

#endif
