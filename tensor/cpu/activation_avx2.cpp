// The AVX2+FMA build of quick_gelu and its derivative (see activation_kernel.h; the body
// is activation_packet.inl, shared with the AVX-512 build). Real only when the build
// compiles this file with -mavx2 -mfma (CMakeLists.txt, beside gemm_avx2.cpp); otherwise
// compiled() is false and the scalar kernels run.
#include "tensor/cpu/activation_kernel.h"

#if defined(__AVX2__) && defined(__FMA__)

// Eigen renamed (as in gemm_avx2.cpp, under its own name): its AVX2 template instances
// must not be merged by the linker with the baseline ones used everywhere else.
#define Eigen mms_eigen_avx2_activation
#include <Eigen/Core>

#define MMS_ACTIVATION_NAMESPACE mms::cpu::activation::avx2
#define MMS_ACTIVATION_PACKET Eigen::internal::Packet8f
#include "tensor/cpu/activation_packet.inl"
#undef MMS_ACTIVATION_PACKET
#undef MMS_ACTIVATION_NAMESPACE

#undef Eigen

#else

#include <cstdlib>

namespace mms::cpu::activation::avx2 {
bool compiled() { return false; }
// Never called: the caller checks compiled() first.
void quick_gelu(const float*, float*, int64_t) { std::abort(); }
void quick_gelu_backward(const float*, const float*, float*, int64_t) { std::abort(); }
}  // namespace mms::cpu::activation::avx2

#endif
