// The AVX2+FMA build of quick_gelu and its derivative (see activation_kernel.h). Real only
// when the build compiles this file with -mavx2 -mfma (CMakeLists.txt, beside
// gemm_avx2.cpp); otherwise compiled() is false and the scalar kernels run.
//
// sigmoid(z) = 1 / (1 + exp(-z)) needs no branch here: for z >> 0, exp(-z) is 0 and the
// quotient 1; for z << 0, exp(-z) overflows to +inf and the quotient is 0 (the scalar
// kernel's e / (1 + e) form still gives a tiny number there: for x below -52.1 this one
// returns 0 where the true quick_gelu is below 2e-37); a NaN input stays NaN. One exp,
// no select, so Eigen keeps the whole expression 8-wide.
#include "tensor/cpu/activation_kernel.h"

#if defined(__AVX2__) && defined(__FMA__)

// Eigen renamed (as in gemm_avx2.cpp, under its own name): its AVX2 template instances
// must not be merged by the linker with the baseline ones used everywhere else.
#define Eigen mms_eigen_avx2_activation
#include <Eigen/Core>

namespace mms::cpu::activation::avx2 {

namespace {
constexpr float kQuickGelu = 1.702f;
using Array = Eigen::Array<float, Eigen::Dynamic, 1>;
using ConstMap = Eigen::Map<const Array>;
using Map = Eigen::Map<Array>;
}  // namespace

bool compiled() { return true; }

void quick_gelu(const float* x, float* y, int64_t n) {
  const ConstMap in(x, n);
  Map(y, n) = in / (1.0f + (-kQuickGelu * in).exp());
}

void quick_gelu_backward(const float* grad_y, const float* x, float* grad_x, int64_t n) {
  // In blocks, so s stays in L1 between its two uses.
  constexpr int64_t kBlock = 1024;
  alignas(64) float s_block[kBlock];
  for (int64_t begin = 0; begin < n; begin += kBlock) {
    const int64_t len = n - begin < kBlock ? n - begin : kBlock;
    const ConstMap in(x + begin, len), dy(grad_y + begin, len);
    Map s(s_block, len);
    s = 1.0f / (1.0f + (-kQuickGelu * in).exp());
    Map(grad_x + begin, len) = dy * (s + kQuickGelu * in * s * (1.0f - s));
  }
}

}  // namespace mms::cpu::activation::avx2

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
