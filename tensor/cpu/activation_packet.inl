// The body of the SIMD quick_gelu kernels, compiled twice: activation_avx2.cpp (8 floats,
// Packet8f) and activation_avx512.cpp (16 floats, Packet16f). The includer defines
// MMS_ACTIVATION_COMPILED (1 when the compiler targets that instruction set, else 0: then
// this file gives compiled() = false and stubs), MMS_ACTIVATION_NAMESPACE,
// MMS_ACTIVATION_PACKET, and Eigen as a name of its own (so that each build's Eigen
// template instances are not merged by the linker with the baseline ones used everywhere
// else). This file undefines all four at its end.
//
// sigmoid(z) = 1 / (1 + exp(-z)) needs no branch here: for z >> 0, exp(-z) is 0 and the
// quotient 1; for z << 0, exp(-z) overflows to +inf and the quotient is 0 (the scalar
// kernel's e / (1 + e) form still gives a tiny number there: for x below -52.1 this one
// returns 0 where the true quick_gelu is below 2e-37); a NaN input stays NaN. One exp
// and no select per element.
//
// exp is Eigen's generic pexp_float (Cephes' polynomial) at both widths: every operation
// in it is exact per lane or correctly rounded, so both builds give each element the same
// bits, and which one runs does not change a result (tests/test_cpu_kernels.cpp checks).
// (Eigen 3.4's own AVX-512 pexp is a different variant; it is not used.)
//
// Written with Eigen's packet functions rather than an Eigen array expression: the
// expression's loop computes the elements before the first aligned output address and
// after the last full packet with std::exp, which rounds differently from the packet exp,
// so a value would depend on where its run starts (the thread cut, a view's offset).
// Here every element goes through pexp_float: the last n % width in a zero-padded packet.
#if MMS_ACTIVATION_COMPILED

#include <Eigen/Core>

namespace MMS_ACTIVATION_NAMESPACE {

namespace {

using Packet = MMS_ACTIVATION_PACKET;
namespace ei = Eigen::internal;
constexpr int64_t kWidth = sizeof(Packet) / sizeof(float);  // 8 or 16
constexpr float kQuickGelu = 1.702f;

inline Packet exp_packet(Packet x) { return ei::pexp_float(x); }

// s = sigmoid(z) = 1 / (1 + exp(-z))
inline Packet sigmoid(Packet z) {
  const Packet one = ei::pset1<Packet>(1.0f);
  return ei::pdiv(one, ei::padd(one, exp_packet(ei::pnegate(z))));
}

// x * sigmoid(1.702 x), as x / (1 + exp(-1.702 x)): one rounding fewer than x * s
inline Packet quick_gelu_packet(Packet x) {
  const Packet one = ei::pset1<Packet>(1.0f);
  return ei::pdiv(x, ei::padd(one, exp_packet(ei::pnegate(ei::pmul(ei::pset1<Packet>(kQuickGelu), x)))));
}

// dy * (s + z s (1 - s)), z = 1.702 x, s = sigmoid(z)
inline Packet quick_gelu_grad_packet(Packet dy, Packet x) {
  const Packet one = ei::pset1<Packet>(1.0f);
  const Packet z = ei::pmul(ei::pset1<Packet>(kQuickGelu), x);
  const Packet s = sigmoid(z);
  return ei::pmul(dy, ei::padd(s, ei::pmul(ei::pmul(z, s), ei::psub(one, s))));
}

// The last n < kWidth elements of each input, zero-padded to a packet.
inline Packet load_tail(const float* p, int64_t n) {
  alignas(64) float buffer[kWidth] = {};
  for (int64_t i = 0; i < n; ++i) buffer[i] = p[i];
  return ei::pload<Packet>(buffer);
}
inline void store_tail(float* p, Packet v, int64_t n) {
  alignas(64) float buffer[kWidth];
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

}  // namespace MMS_ACTIVATION_NAMESPACE

#else  // not this instruction set: CpuBackend checks compiled() before calling the kernels

#include <cstdlib>

namespace MMS_ACTIVATION_NAMESPACE {
bool compiled() { return false; }
void quick_gelu(const float*, float*, int64_t) { std::abort(); }
void quick_gelu_backward(const float*, const float*, float*, int64_t) { std::abort(); }
}  // namespace MMS_ACTIVATION_NAMESPACE

#endif

#undef MMS_ACTIVATION_COMPILED
#undef MMS_ACTIVATION_NAMESPACE
#undef MMS_ACTIVATION_PACKET
#undef Eigen
