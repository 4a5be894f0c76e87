// The AVX2+FMA build of quick_gelu and its derivative (see activation_kernel.h). Real only
// when the build compiles this file with -mavx2 -mfma (CMakeLists.txt, beside
// gemm_avx2.cpp); otherwise compiled() is false and the scalar kernels run.
//
// sigmoid(z) = 1 / (1 + exp(-z)) needs no branch here: for z >> 0, exp(-z) is 0 and the
// quotient 1; for z << 0, exp(-z) overflows to +inf and the quotient is 0 (the scalar
// kernel's e / (1 + e) form still gives a tiny number there: for x below -52.1 this one
// returns 0 where the true quick_gelu is below 2e-37); a NaN input stays NaN. One exp
// and no select per element.
#include "tensor/cpu/activation_kernel.h"

#if defined(__AVX2__) && defined(__FMA__)

// Eigen renamed (as in gemm_avx2.cpp, under its own name): its AVX2 template instances
// must not be merged by the linker with the baseline ones used everywhere else.
#define Eigen mms_eigen_avx2_activation
#include <Eigen/Core>

namespace mms::cpu::activation::avx2 {

namespace {

// Eight floats at a time with Eigen's packet functions, written out rather than as an
// Eigen array expression: the expression's loop computes the elements before the first
// 32-byte-aligned output address and after the last full packet with std::exp, which
// rounds differently from the packet exp, so a value would depend on where its run
// starts (the thread cut, a view's offset). Here every element goes through pexp: the
// last n % 8 in a zero-padded packet.
using Packet = Eigen::internal::Packet8f;
namespace ei = Eigen::internal;
constexpr int64_t kWidth = 8;
constexpr float kQuickGelu = 1.702f;

// s = sigmoid(z) = 1 / (1 + exp(-z))
inline Packet sigmoid(Packet z) {
  const Packet one = ei::pset1<Packet>(1.0f);
  return ei::pdiv(one, ei::padd(one, ei::pexp(ei::pnegate(z))));
}

// x * sigmoid(1.702 x), as x / (1 + exp(-1.702 x)): one rounding fewer than x * s
inline Packet quick_gelu_packet(Packet x) {
  const Packet one = ei::pset1<Packet>(1.0f);
  return ei::pdiv(x, ei::padd(one, ei::pexp(ei::pnegate(ei::pmul(ei::pset1<Packet>(kQuickGelu), x)))));
}

// dy * (s + z s (1 - s)), z = 1.702 x, s = sigmoid(z)
inline Packet quick_gelu_grad_packet(Packet dy, Packet x) {
  const Packet one = ei::pset1<Packet>(1.0f);
  const Packet z = ei::pmul(ei::pset1<Packet>(kQuickGelu), x);
  const Packet s = sigmoid(z);
  return ei::pmul(dy, ei::padd(s, ei::pmul(ei::pmul(z, s), ei::psub(one, s))));
}

// The last n < 8 elements of each input, zero-padded to a packet.
inline Packet load_tail(const float* p, int64_t n) {
  alignas(32) float buffer[kWidth] = {};
  for (int64_t i = 0; i < n; ++i) buffer[i] = p[i];
  return ei::pload<Packet>(buffer);
}
inline void store_tail(float* p, Packet v, int64_t n) {
  alignas(32) float buffer[kWidth];
  ei::pstore(buffer, v);
  for (int64_t i = 0; i < n; ++i) p[i] = buffer[i];
}

}  // namespace

bool compiled() { return true; }

void quick_gelu(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + kWidth <= n; i += kWidth) ei::pstoreu(y + i, quick_gelu_packet(ei::ploadu<Packet>(x + i)));
  if (i < n) store_tail(y + i, quick_gelu_packet(load_tail(x + i, n - i)), n - i);
}

void quick_gelu_backward(const float* grad_y, const float* x, float* grad_x, int64_t n) {
  int64_t i = 0;
  for (; i + kWidth <= n; i += kWidth) {
    ei::pstoreu(grad_x + i, quick_gelu_grad_packet(ei::ploadu<Packet>(grad_y + i), ei::ploadu<Packet>(x + i)));
  }
  if (i < n) {
    store_tail(grad_x + i, quick_gelu_grad_packet(load_tail(grad_y + i, n - i), load_tail(x + i, n - i)), n - i);
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
