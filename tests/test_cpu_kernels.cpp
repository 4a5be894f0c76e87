// The CPU kernels (tensor/cpu/), called directly through cpu_backend() with known values.
//
// Expected numbers come from outside the engine: hand arithmetic, IEEE bit patterns,
// Random123's published Philox answers, and tools-free Python (mpmath at 30-40 digits
// or numpy float64) for the transcendental ones; the attention gradients are central
// finite differences of a numpy reference. None is the kernel compared with itself.
#include <doctest/doctest.h>

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "tensor/backend.h"
#include "tensor/cpu/activation_kernel.h"
#include "tensor/cpu/attention_kernel.h"
#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/gemm_kernel.h"
#include "tensor/cpu/parallel.h"
#include "tensor/ops.h"
#include "tensor/tensor.h"
#include "tensor/view.h"

using namespace mms;

namespace {

Backend& kernels() { return cpu_backend(); }

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

Tensor f64(const std::vector<double>& values, const Shape& shape) {
  return from_vector<double>(values, shape);
}
Tensor f32(const std::vector<float>& values, const Shape& shape) {
  return from_vector<float>(values, shape);
}
Tensor i64(const std::vector<int64_t>& values, const Shape& shape) {
  return from_vector<int64_t>(values, shape);
}

// Values of a contiguous float32/float64 tensor, read without going through any op.
std::vector<double> values(const Tensor& t) {
  std::vector<double> out(t.numel());
  for (int64_t i = 0; i < t.numel(); ++i) {
    out[i] = t.dtype() == DType::Float64 ? t.data<double>()[i] : t.data<float>()[i];
  }
  return out;
}

// |got - want| <= tol * max(1, |want|) elementwise; NaN never passes; infinities must match.
void check_close(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element ", i, ": got ", got[i], ", want ", want[i]);
    CHECK_FALSE(std::isnan(got[i]));
    if (std::isinf(want[i])) {
      CHECK(got[i] == want[i]);
    } else {
      CHECK(std::abs(got[i] - want[i]) <= tol * std::max(1.0, std::abs(want[i])));
    }
  }
}
void check_close(const Tensor& got, const std::vector<double>& want, double tol) {
  check_close(values(got), want, tol);
}

// The message of the mms::Error thrown by fn (empty when nothing is thrown).
template <typename Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

uint16_t bits_of(BFloat16 v) { return v.bits; }
uint16_t bits_of(Float16 v) { return v.bits; }

}  // namespace

// ---- copy, fill, arange --------------------------------------------------------------

TEST_CASE("copy converts between dtypes with truncation, saturation and nonzero -> true") {
  Tensor src = f64({-2.7, 3.9, 0.0, kNaN, 1e20, -1e20, 0.25, 255.5}, {8});
  Tensor as_int = empty({8}, DType::Int64);
  kernels().copy(src, as_int);
  const int64_t* i = as_int.data<int64_t>();
  CHECK(i[0] == -2);  // toward zero
  CHECK(i[1] == 3);
  CHECK(i[2] == 0);
  CHECK(i[3] == 0);  // NaN -> 0 (defined, not UB)
  CHECK(i[4] == std::numeric_limits<int64_t>::max());
  CHECK(i[5] == std::numeric_limits<int64_t>::min());
  CHECK(i[6] == 0);
  CHECK(i[7] == 255);

  Tensor as_bool = empty({8}, DType::Bool);
  kernels().copy(src, as_bool);
  const bool* b = as_bool.data<bool>();
  CHECK(b[0]);
  CHECK_FALSE(b[2]);
  CHECK(b[3]);  // NaN is nonzero
  CHECK(b[6]);

  Tensor as_u8 = empty({8}, DType::UInt8);
  kernels().copy(src, as_u8);
  CHECK(as_u8.data<uint8_t>()[4] == 255);  // saturates
  CHECK(as_u8.data<uint8_t>()[0] == 0);

  Tensor ints = i64({-3, 7}, {2});
  Tensor back = empty({2}, DType::Float32);
  kernels().copy(ints, back);
  check_close(back, {-3.0, 7.0}, 0.0);
}

TEST_CASE("copy reads transposed and stride-0 (broadcast) sources") {
  // x = [[1, 2, 3], [4, 5, 6]]; its transpose is [3, 2] with strides [1, 3]
  Tensor x = f32({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor xt = make_view(x, {3, 2}, {1, 3}, 0);
  Tensor out = empty({3, 2}, DType::Float64);
  kernels().copy(xt, out);
  check_close(out, {1, 4, 2, 5, 3, 6}, 0.0);

  // a row [10, 20] broadcast to 3 rows (stride 0 on dim 0), with an offset view
  Tensor row = f32({0, 10, 20}, {3});
  Tensor expanded = make_view(row, {3, 2}, {0, 1}, 1);
  Tensor out2 = empty({3, 2}, DType::Float32);
  kernels().copy(expanded, out2);
  check_close(out2, {10, 20, 10, 20, 10, 20}, 0.0);

  // a non-contiguous destination: write into every other element
  Tensor dst = zeros({6}, DType::Float32);
  Tensor strided_dst = make_view(dst, {3}, {2}, 1);
  kernels().copy(f32({7, 8, 9}, {3}), strided_dst);
  check_close(dst, {0, 7, 0, 8, 0, 9}, 0.0);

  // a large strided copy takes the multi-threaded path: [400, 300] transposed
  const int64_t rows = 400, cols = 300;
  std::vector<double> big(rows * cols);
  for (int64_t k = 0; k < rows * cols; ++k) big[k] = static_cast<double>(k);
  Tensor m = f64(big, {rows, cols});
  Tensor mt = make_view(m, {cols, rows}, {1, cols}, 0);
  Tensor out3 = empty({cols, rows}, DType::Float64);
  kernels().copy(mt, out3);
  const double* o = out3.data<double>();
  bool all = true;
  for (int64_t c = 0; c < cols; ++c)
    for (int64_t r = 0; r < rows; ++r) all = all && o[c * rows + r] == static_cast<double>(r * cols + c);
  CHECK(all);
}

TEST_CASE("bfloat16 and float16 conversions round to nearest even") {
  Tensor src = f32({1.0f / 3.0f, 1.0f + 1.0f / 256.0f, 1.0f + 3.0f / 256.0f, -0.0f}, {4});
  Tensor bf = empty({4}, DType::BFloat16);
  kernels().copy(src, bf);
  const BFloat16* pb = bf.data<BFloat16>();
  CHECK(bits_of(pb[0]) == 0x3EAB);  // 0x3EAAAAAB: the dropped 0xAAAB > half rounds up
  CHECK(bits_of(pb[1]) == 0x3F80);  // exactly halfway between 1 and 1 + 2^-7: even (down)
  CHECK(bits_of(pb[2]) == 0x3F82);  // halfway between 1 + 2^-7 and 1 + 2^-6: even (up)
  CHECK(bits_of(pb[3]) == 0x8000);

  const float tiny = std::ldexp(1.0f, -24);  // the smallest float16 subnormal
  Tensor hsrc = f32({65504.0f, 65519.0f, 65520.0f, tiny, std::ldexp(1.0f, -25),
                     3 * std::ldexp(1.0f, -25), 1.0f / 3.0f, -2.0f},
                    {8});
  Tensor h = empty({8}, DType::Float16);
  kernels().copy(hsrc, h);
  const Float16* ph = h.data<Float16>();
  CHECK(bits_of(ph[0]) == 0x7BFF);  // the largest finite half
  CHECK(bits_of(ph[1]) == 0x7BFF);  // below the overflow threshold 65520
  CHECK(bits_of(ph[2]) == 0x7C00);  // rounds to infinity
  CHECK(bits_of(ph[3]) == 0x0001);
  CHECK(bits_of(ph[4]) == 0x0000);  // half of the smallest subnormal: ties to even 0
  CHECK(bits_of(ph[5]) == 0x0002);  // 1.5 units: ties to even 2
  CHECK(bits_of(ph[6]) == 0x3555);
  CHECK(bits_of(ph[7]) == 0xC000);

  Tensor back = empty({8}, DType::Float64);
  kernels().copy(h, back);
  const double* pd = back.data<double>();
  CHECK(pd[0] == 65504.0);
  CHECK(pd[2] == kInf);
  CHECK(pd[3] == std::ldexp(1.0, -24));
  CHECK(pd[6] == 0.333251953125);  // 0x3555 = 1365/4096

  // every finite float16 survives half -> float32 -> half unchanged
  std::vector<uint16_t> all_bits;
  for (uint32_t v = 0; v < 65536; ++v) {
    if ((v & 0x7C00u) != 0x7C00u) all_bits.push_back(static_cast<uint16_t>(v));
  }
  const int64_t n = static_cast<int64_t>(all_bits.size());
  Tensor halves = from_blob(all_bits.data(), {n}, DType::Float16);
  Tensor as_float = empty({n}, DType::Float32);
  Tensor again = empty({n}, DType::Float16);
  kernels().copy(halves, as_float);
  kernels().copy(as_float, again);
  CHECK(std::memcmp(again.raw_data(), all_bits.data(), n * 2) == 0);
  // and every bfloat16 pattern that is not NaN likewise
  std::vector<uint16_t> bf_bits;
  for (uint32_t v = 0; v < 65536; ++v) {
    if ((v & 0x7F80u) != 0x7F80u || (v & 0x7Fu) == 0) bf_bits.push_back(static_cast<uint16_t>(v));
  }
  const int64_t nb = static_cast<int64_t>(bf_bits.size());
  Tensor bfs = from_blob(bf_bits.data(), {nb}, DType::BFloat16);
  Tensor bf_float = empty({nb}, DType::Float32);
  Tensor bf_again = empty({nb}, DType::BFloat16);
  kernels().copy(bfs, bf_float);
  kernels().copy(bf_float, bf_again);
  CHECK(std::memcmp(bf_again.raw_data(), bf_bits.data(), nb * 2) == 0);
}

TEST_CASE("fill and arange") {
  Tensor t = empty({2, 3}, DType::Int32);
  kernels().fill(t, -7.9);
  for (int k = 0; k < 6; ++k) CHECK(t.data<int32_t>()[k] == -7);
  Tensor f = empty({3}, DType::Float64);
  kernels().fill(f, 2.5);
  check_close(f, {2.5, 2.5, 2.5}, 0.0);
  Tensor a = empty({5}, DType::Float32);
  kernels().arange(a, 1.0, 0.5);
  check_close(a, {1.0, 1.5, 2.0, 2.5, 3.0}, 0.0);
  Tensor ai = empty({4}, DType::Int64);
  kernels().arange(ai, 10.0, -3.0);
  CHECK(ai.to_vector<int64_t>() == std::vector<int64_t>{10, 7, 4, 1});
}

// ---- random --------------------------------------------------------------------------

TEST_CASE("random follows the Philox stream contract") {
  // Random123 known answer: philox4x32_10(counter 0, key 0) =
  //   {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}; u = (word >> 8) / 2^24.
  Tensor u = empty({4}, DType::Float64);
  kernels().random(RandomKind::Uniform, 0, 0, 0.0, 1.0, u);
  check_close(u, {0.3990464210510254, 0.8805201649665833, 0.7357127666473389, 0.6054818034172058},
              0.0);
  // a + (b - a) u, and an offset slice reproduces the tail of the stream (float32)
  Tensor scaled = empty({3}, DType::Float32);
  kernels().random(RandomKind::Uniform, 0, 1, -1.0, 3.0, scaled);
  check_close(scaled, {-1 + 4 * 0.8805201649665833, -1 + 4 * 0.7357127666473389,
                       -1 + 4 * 0.6054818034172058},
              1e-7);
  // Box-Muller on pairs: z0 = r cos(2 pi u2), z1 = r sin(2 pi u2), r = sqrt(-2 ln(1 - u0))
  Tensor z = empty({4}, DType::Float64);
  kernels().random(RandomKind::Normal, 0, 0, 0.0, 1.0, z);
  check_close(z, {0.7379256600714554, -0.6884336528957417, -1.2860191680107422, -1.003788933905129},
              1e-14);
  // an odd offset lands mid-pair and still gives the same element; mean/std applied
  Tensor z_odd = empty({1}, DType::Float32);
  kernels().random(RandomKind::Normal, 0, 3, 2.0, 0.5, z_odd);
  check_close(z_odd, {2.0 + 0.5 * -1.003788933905129}, 1e-7);

  // a large draw is split across threads and stays the same stream
  const int64_t n = 100000;
  Tensor big = empty({n}, DType::Float32);
  kernels().random(RandomKind::Uniform, 42, 0, 0.0, 1.0, big);
  Tensor tail = empty({10}, DType::Float32);
  kernels().random(RandomKind::Uniform, 42, n - 10, 0.0, 1.0, tail);
  CHECK(std::memcmp(big.data<float>() + n - 10, tail.data<float>(), 40) == 0);
  double mean = 0;
  for (int64_t k = 0; k < n; ++k) mean += big.data<float>()[k];
  CHECK(std::abs(mean / n - 0.5) < 0.01);
}

// ---- elementwise ---------------------------------------------------------------------

TEST_CASE("unary forward and derivative at known points") {
  struct Case {
    UnaryOp op;
    std::vector<double> forward, derivative;  // at x = -1.5, 0.5, 2 (mpmath, 17 digits)
  };
  const std::vector<Case> cases = {
      {UnaryOp::GeluErf,
       {-0.1002108019032871, 0.34573123063700655, 1.9544997361036416},
       {-0.12746919222997953, 0.86749512465616284, 1.0852318010781969}},
      {UnaryOp::GeluTanh,
       {-0.10042842301976708, 0.34571400982514392, 1.954597694087775},
       {-0.12771079315143308, 0.86736990353464231, 1.0860992566236184}},
      {UnaryOp::QuickGelu,
       {-0.10833780155292343, 0.35038843660638012, 1.9356586231442081},
       {-0.098848064624102926, 0.87922191196541427, 1.0738153543085419}},
      {UnaryOp::Sigmoid,
       {0.18242552380635634, 0.62245933120185456, 0.88079707797788244},
       {0.14914645207033286, 0.23500371220159449, 0.10499358540350652}},
      {UnaryOp::Tanh,
       {-0.90514825364486644, 0.46211715726000976, 0.96402758007581688},
       {0.18070663892364853, 0.78644773296592741, 0.070650824853164466}},
      {UnaryOp::Square, {2.25, 0.25, 4.0}, {-3.0, 1.0, 4.0}},
      {UnaryOp::Reciprocal, {-2.0 / 3.0, 2.0, 0.5}, {-1.0 / 2.25, -4.0, -0.25}},
      {UnaryOp::Neg, {1.5, -0.5, -2.0}, {-1.0, -1.0, -1.0}},
      {UnaryOp::Abs, {1.5, 0.5, 2.0}, {-1.0, 1.0, 1.0}},
      {UnaryOp::Relu, {0.0, 0.5, 2.0}, {0.0, 1.0, 1.0}},
  };
  for (const Case& c : cases) {
    INFO("op ", unary_op_name(c.op));
    for (DType dtype : {DType::Float64, DType::Float32}) {
      const double tol = dtype == DType::Float64 ? 1e-14 : 2e-7;
      Tensor x = f64({-1.5, 0.5, 2.0}, {3});
      if (dtype == DType::Float32) x = f32({-1.5f, 0.5f, 2.0f}, {3});
      Tensor y = empty({3}, dtype);
      kernels().unary(c.op, x, y, 0, 0);
      check_close(y, c.forward, tol);
      Tensor ones_grad = full({3}, 1.0, dtype);
      Tensor dx = empty({3}, dtype);
      kernels().unary_backward(c.op, ones_grad, x, dx, 0, 0);
      check_close(dx, c.derivative, tol);
    }
  }
}

TEST_CASE("unary scalar ops, clamp, pow and the derivatives at 0") {
  Tensor x = f64({-2.0, 0.0, 0.5, 3.0}, {4});
  Tensor y = empty({4}, DType::Float64), g = full({4}, 2.0, DType::Float64);
  Tensor dx = empty({4}, DType::Float64);
  const double inf = kInf;

  kernels().unary(UnaryOp::Clamp, x, y, -1.0, 0.5);
  check_close(y, {-1.0, 0.0, 0.5, 0.5}, 0);
  kernels().unary_backward(UnaryOp::Clamp, g, x, dx, -1.0, 0.5);
  check_close(dx, {0.0, 2.0, 2.0, 0.0}, 0);  // passes where low <= x <= high, edges included
  kernels().unary(UnaryOp::Clamp, x, y, 0.0, inf);  // open upper side
  check_close(y, {0.0, 0.0, 0.5, 3.0}, 0);

  for (UnaryOp op : {UnaryOp::Abs, UnaryOp::Relu, UnaryOp::Sign}) {
    kernels().unary_backward(op, g, x, dx, 0, 0);
    CHECK(values(dx)[1] == 0.0);  // derivative at 0 is 0
  }
  kernels().unary(UnaryOp::Sign, x, y, 0, 0);
  check_close(y, {-1.0, 0.0, 1.0, 1.0}, 0);

  kernels().unary(UnaryOp::PowScalar, x, y, 3.0, 0);
  check_close(y, {-8.0, 0.0, 0.125, 27.0}, 1e-15);
  kernels().unary_backward(UnaryOp::PowScalar, g, x, dx, 3.0, 0);
  check_close(dx, {2 * 12.0, 0.0, 2 * 0.75, 2 * 27.0}, 1e-15);  // 2 * 3 x^2
  kernels().unary_backward(UnaryOp::PowScalar, g, x, dx, 0.0, 0);
  check_close(dx, {0, 0, 0, 0}, 0);  // x^0: exactly zero gradient, even at x = 0

  kernels().unary(UnaryOp::AddScalar, x, y, 1.5, 0);
  check_close(y, {-0.5, 1.5, 2.0, 4.5}, 0);
  kernels().unary(UnaryOp::MulScalar, x, y, -2.0, 0);
  check_close(y, {4.0, 0.0, -1.0, -6.0}, 0);
  kernels().unary(UnaryOp::RSubScalar, x, y, 1.0, 0);
  check_close(y, {3.0, 1.0, 0.5, -2.0}, 0);
  Tensor pos = f64({0.25, 4.0}, {2}), py = empty({2}, DType::Float64);
  Tensor pg = full({2}, 1.0, DType::Float64), pd = empty({2}, DType::Float64);
  kernels().unary(UnaryOp::RDivScalar, pos, py, 3.0, 0);
  check_close(py, {12.0, 0.75}, 1e-15);
  kernels().unary_backward(UnaryOp::RDivScalar, pg, pos, pd, 3.0, 0);
  check_close(pd, {-48.0, -3.0 / 16.0}, 1e-15);
  kernels().unary(UnaryOp::Rsqrt, pos, py, 0, 0);
  check_close(py, {2.0, 0.5}, 1e-15);
  kernels().unary_backward(UnaryOp::Rsqrt, pg, pos, pd, 0, 0);
  check_close(pd, {-0.5 * 8.0, -0.5 / 8.0}, 1e-15);  // -1/2 x^-3/2: 0.25^-1.5 = 8
  kernels().unary_backward(UnaryOp::Sqrt, pg, pos, pd, 0, 0);
  check_close(pd, {1.0, 0.25}, 1e-15);  // 1 / (2 sqrt x)
  kernels().unary(UnaryOp::Log1p, pos, py, 0, 0);
  check_close(py, {std::log(1.25), std::log(5.0)}, 1e-15);

  // sigmoid never overflows, and its derivative there is 0, not NaN
  Tensor extreme = f32({-1000.0f, 1000.0f}, {2}), ey = empty({2}, DType::Float32);
  Tensor eg = full({2}, 1.0), ed = empty({2}, DType::Float32);
  kernels().unary(UnaryOp::Sigmoid, extreme, ey, 0, 0);
  check_close(ey, {0.0, 1.0}, 0);
  kernels().unary_backward(UnaryOp::Sigmoid, eg, extreme, ed, 0, 0);
  check_close(ed, {0.0, 0.0}, 0);
  kernels().unary(UnaryOp::QuickGelu, extreme, ey, 0, 0);
  check_close(ey, {0.0, 1000.0}, 0);
}

TEST_CASE("unary on non-contiguous input and integer dtype errors") {
  // the transpose of [[1, 2], [3, 4]]
  Tensor x = f64({1, 2, 3, 4}, {2, 2});
  Tensor xt = make_view(x, {2, 2}, {1, 2}, 0);
  Tensor y = empty({2, 2}, DType::Float64);
  kernels().unary(UnaryOp::Square, xt, y, 0, 0);
  check_close(y, {1, 9, 4, 16}, 0);
  Tensor ints = i64({1, 2}, {2}), out = empty({2}, DType::Int64);
  const std::string msg = error_of([&] { kernels().unary(UnaryOp::Exp, ints, out, 0, 0); });
  CHECK(msg == "exp: dtype int64 not supported on cpu");
}

TEST_CASE("binary ops broadcast through stride 0 and compare into bool") {
  Tensor a = f32({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor row = f32({10, 20, 30}, {3});
  Tensor b = make_view(row, {2, 3}, {0, 1}, 0);  // row broadcast over 2 rows
  Tensor out = empty({2, 3}, DType::Float32);
  kernels().binary(BinaryOp::Add, a, b, out);
  check_close(out, {11, 22, 33, 14, 25, 36}, 0);
  kernels().binary(BinaryOp::Div, a, b, out);
  check_close(out, {0.1, 0.1, 0.1, 0.4, 0.25, 0.2}, 1e-7);
  kernels().binary(BinaryOp::Sub, b, a, out);
  check_close(out, {9, 18, 27, 6, 15, 24}, 0);
  Tensor scalar = f32({2}, {1});
  Tensor s = make_view(scalar, {2, 3}, {0, 0}, 0);
  kernels().binary(BinaryOp::Pow, a, s, out);
  check_close(out, {1, 4, 9, 16, 25, 36}, 1e-7);

  Tensor cmp = empty({2, 3}, DType::Bool);
  Tensor three = make_view(f32({3}, {1}), {2, 3}, {0, 0}, 0);
  kernels().binary(BinaryOp::Ge, a, three, cmp);
  CHECK(cmp.to_vector<bool>() == std::vector<bool>{false, false, true, true, true, true});
  kernels().binary(BinaryOp::Eq, a, three, cmp);
  CHECK(cmp.to_vector<bool>() == std::vector<bool>{false, false, true, false, false, false});

  // maximum/minimum propagate NaN from either side
  Tensor p = f64({1.0, kNaN, 3.0}, {3}), q = f64({2.0, 0.0, kNaN}, {3});
  Tensor m = empty({3}, DType::Float64);
  kernels().binary(BinaryOp::Maximum, p, q, m);
  CHECK(values(m)[0] == 2.0);
  CHECK(std::isnan(values(m)[1]));
  CHECK(std::isnan(values(m)[2]));
  kernels().binary(BinaryOp::Minimum, p, q, m);
  CHECK(values(m)[0] == 1.0);

  // integers: exact arithmetic and comparisons; division is refused
  Tensor ia = i64({5, -3}, {2}), ib = i64({2, 7}, {2}), io = empty({2}, DType::Int64);
  kernels().binary(BinaryOp::Mul, ia, ib, io);
  CHECK(io.to_vector<int64_t>() == std::vector<int64_t>{10, -21});
  CHECK(error_of([&] { kernels().binary(BinaryOp::Div, ia, ib, io); }) ==
        "div: dtype int64 not supported on cpu");
}

TEST_CASE("where selects with a broadcast bool mask, for any dtype") {
  Tensor mask_row = from_vector<bool>({true, false, true}, {3});
  Tensor cond = make_view(mask_row, {2, 3}, {0, 1}, 0);
  Tensor a = i64({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = make_view(i64({-1}, {1}), {2, 3}, {0, 0}, 0);
  Tensor out = empty({2, 3}, DType::Int64);
  kernels().where(cond, a, b, out);
  CHECK(out.to_vector<int64_t>() == std::vector<int64_t>{1, -1, 3, 4, -1, 6});
  Tensor fa = f64({1, 2, 3, 4, 5, 6}, {2, 3}), fb = zeros({2, 3}, DType::Float64);
  Tensor fo = empty({2, 3}, DType::Float64);
  kernels().where(cond, fa, fb, fo);
  check_close(fo, {1, 0, 3, 4, 0, 6}, 0);
}

// ---- reductions ----------------------------------------------------------------------

TEST_CASE("reduce_last: sums in double, first argmax, stable logsumexp") {
  // 1e8 + sixteen 1s: float32 accumulation would lose every 1 (ulp at 1e8 is 8)
  std::vector<float> row(17, 1.0f);
  row[0] = 1e8f;
  Tensor x = f32(row, {1, 17});
  Tensor s = empty({1}, DType::Float32);
  kernels().reduce_last(ReduceOp::Sum, x, s);
  CHECK(values(s)[0] == 100000016.0);

  Tensor ties = f64({1, 3, 3, 2, /**/ -1, -1, -1, -1, /**/ 0, 5, 1, 5}, {3, 4});
  Tensor am = empty({3}, DType::Int64);
  kernels().reduce_last(ReduceOp::ArgMax, ties, am);
  CHECK(am.to_vector<int64_t>() == std::vector<int64_t>{1, 0, 1});
  Tensor mx = empty({3}, DType::Float64), mn = empty({3}, DType::Float64);
  kernels().reduce_last(ReduceOp::Max, ties, mx);
  kernels().reduce_last(ReduceOp::Min, ties, mn);
  check_close(mx, {3, -1, 5}, 0);
  check_close(mn, {1, -1, 0}, 0);

  Tensor lx = f64({1, 2, 3, /**/ -kInf, -kInf, -kInf, /**/ 1000, 999, 998, /**/ -kInf, 0, -kInf},
                  {4, 3});
  Tensor lse = empty({4}, DType::Float64);
  kernels().reduce_last(ReduceOp::LogSumExp, lx, lse);
  check_close(lse, {3.40760596444438, -kInf, 1000.4076059644444, 0.0}, 1e-15);
  Tensor lx32 = f32({1000, 999, 998}, {1, 3}), lse32 = empty({1}, DType::Float32);
  kernels().reduce_last(ReduceOp::LogSumExp, lx32, lse32);
  check_close(lse32, {1000.4076059644444}, 1e-7);

  Tensor nan_row = f64({1, kNaN, 5}, {1, 3}), nm = empty({1}, DType::Float64);
  kernels().reduce_last(ReduceOp::Max, nan_row, nm);
  CHECK(std::isnan(values(nm)[0]));
  Tensor nam = empty({1}, DType::Int64);
  kernels().reduce_last(ReduceOp::ArgMax, nan_row, nam);
  CHECK(nam.to_vector<int64_t>()[0] == 1);

  // many rows take the threaded path: row r holds r, r+1, ..., r+99 -> sum 100 r + 4950
  const int64_t rows = 1000, width = 100;
  std::vector<double> big(rows * width);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < width; ++j) big[r * width + j] = static_cast<double>(r + j);
  Tensor bx = f64(big, {rows, width}), bs = empty({rows}, DType::Float64);
  kernels().reduce_last(ReduceOp::Sum, bx, bs);
  bool all = true;
  for (int64_t r = 0; r < rows; ++r) all = all && values(bs)[r] == 100.0 * r + 4950.0;
  CHECK(all);
}

TEST_CASE("sum_rows: column sums in double, every column width, float32 and float64") {
  // A column of 1e8 and sixteen 1s: float32 accumulation would lose every 1.
  std::vector<float> column_case(17 * 3, 0.5f);
  for (int64_t m = 0; m < 17; ++m) column_case[m * 3 + 1] = m == 0 ? 1e8f : 1.0f;
  Tensor s = empty({3}, DType::Float32);
  REQUIRE(kernels().sum_rows(f32(column_case, {17, 3}), s));
  check_close(s, {8.5, 100000016.0, 8.5}, 0);

  // Widths around the 32-column block, rows that are not a multiple of anything.
  for (int64_t cols : {1, 31, 32, 33, 70, 200}) {
    CAPTURE(cols);
    const int64_t rows = 37;
    std::vector<double> x(rows * cols), want(cols, 0.0);
    for (int64_t m = 0; m < rows; ++m)
      for (int64_t j = 0; j < cols; ++j) {
        x[m * cols + j] = std::ldexp(static_cast<double>((m * 131 + j * 17) % 97) - 48.0, -5);
        want[j] += x[m * cols + j];  // exact: multiples of 2^-5 far from 2^53
      }
    Tensor out64 = empty({cols}, DType::Float64);
    REQUIRE(kernels().sum_rows(f64(x, {rows, cols}), out64));
    check_close(out64, want, 0);
    Tensor out32 = empty({cols}, DType::Float32);
    REQUIRE(kernels().sum_rows(f64(x, {rows, cols}).to(DType::Float32), out32));
    check_close(out32, want, 0);
  }
  // bf16 has no column-sum kernel here: the caller falls back to the GEMV.
  Tensor half_out = empty({3}, DType::BFloat16);
  CHECK_FALSE(kernels().sum_rows(f32(column_case, {17, 3}).to(DType::BFloat16), half_out));
  Tensor wrong = empty({4}, DType::Float32);
  CHECK_THROWS_WITH_AS(kernels().sum_rows(f32(column_case, {17, 3}), wrong),
                       doctest::Contains("column sums of [17, 3]"), Error);
  // And through ops::sum over the leading dims of a 3-d tensor.
  Tensor x3 = f64({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, {2, 3, 2});
  check_close(ops::sum(x3, {0, 1}), {36, 42}, 0);
}

// ---- softmax and layer norm ----------------------------------------------------------

TEST_CASE("softmax and log_softmax forward and backward") {
  for (DType dtype : {DType::Float64, DType::Float32}) {
    const double tol = dtype == DType::Float64 ? 1e-15 : 2e-7;
    Tensor x = f64({1, 2, 3}, {1, 3});
    Tensor g = f64({0.5, -1.0, 2.0}, {1, 3});
    if (dtype == DType::Float32) {
      x = f32({1, 2, 3}, {1, 3});
      g = f32({0.5f, -1.0f, 2.0f}, {1, 3});
    }
    Tensor p = empty({1, 3}, dtype), lp = empty({1, 3}, dtype), gi = empty({1, 3}, dtype);
    kernels().softmax_last(x, p, false);
    check_close(p, {0.09003057317038046, 0.24472847105479767, 0.6652409557748219}, tol);
    kernels().softmax_last(x, lp, true);
    check_close(lp, {-2.40760596444438, -1.4076059644443801, -0.4076059644443803}, tol);
    kernels().softmax_last_backward(g, p, gi, false);
    check_close(gi, {-0.05678847003696696, -0.5214597727496748, 0.5782482427866417}, tol);
    kernels().softmax_last_backward(g, lp, gi, true);
    check_close(gi, {0.3649541402444293, -1.3670927065821965, 1.002138566337767}, tol);
  }
  // shifting a row by 1000 changes nothing (the max is subtracted first)
  Tensor big = f32({1001, 1002, 1003}, {1, 3}), pb = empty({1, 3}, DType::Float32);
  kernels().softmax_last(big, pb, false);
  check_close(pb, {0.09003057317038046, 0.24472847105479767, 0.6652409557748219}, 2e-7);
  // a -inf input (a masked score) gets exactly 0, in both dtypes; an all -inf row is NaN
  for (DType dtype : {DType::Float64, DType::Float32}) {
    const double inf = std::numeric_limits<double>::infinity();
    Tensor masked = f64({0.0, -inf, 1.0, -inf, -inf, -inf}, {2, 3}).to(dtype), pm = empty({2, 3}, dtype);
    kernels().softmax_last(masked, pm, false);
    const std::vector<double> got = values(pm);
    CHECK(got[1] == 0.0);
    CHECK(got[0] == doctest::Approx(0.2689414213699951).epsilon(1e-6));
    CHECK(got[2] == doctest::Approx(0.7310585786300049).epsilon(1e-6));
    for (int j = 3; j < 6; ++j) CHECK(std::isnan(got[j]));
  }
}

TEST_CASE("layer_norm forward and backward against a reference") {
  // numpy float64 forward; gradients by 40-digit mpmath central differences
  Tensor x = f64({1, 2, 3, 4, -1, 0.5, 2, 0}, {2, 4});
  Tensor w = f64({0.5, 1, 1.5, 2}, {4}), b = f64({0.1, 0.2, 0.3, 0.4}, {4});
  Tensor gy = f64({0.1, -0.2, 0.3, 0.4, 1, 0, -1, 0.5}, {2, 4});
  Tensor y = empty({2, 4}, DType::Float64);
  Tensor mean = empty({2}, DType::Float64), rstd = empty({2}, DType::Float64);
  kernels().layer_norm(x, w, b, 1e-5, y, mean, rstd);
  check_close(y, {-0.5708177099844635, -0.24721180665630899, 0.9708177099844635, 3.0832708399378537,
                  -0.5350825864286669, 0.31546956116884856, 2.551656442792546, -0.29281736701309113},
              1e-14);
  check_close(mean, {2.5, 0.375}, 1e-15);
  check_close(rstd, {0.894423613312618, 0.9237564893507882}, 1e-14);

  Tensor gx = empty({2, 4}, DType::Float64), gw = full({4}, 99.0, DType::Float64);
  Tensor gb = full({4}, 99.0, DType::Float64);
  kernels().layer_norm_backward(gy, x, w, mean, rstd, Tensor(), gx, gw, gb);
  check_close(gx, {0.18782584622637602, -0.2951608299162552, 0.026833745922469773,
                   0.08050123776740942, -0.48650365819917724, 0.08621653662496104,
                   -0.2648197579016889, 0.6651068794759051},
              1e-13);
  // written, not accumulated onto the 99s
  check_close(gw, {-1.4043287148542265, 0.08944236133126181, -1.3669407531981381,
                   0.36344982623429806},
              1e-13);
  check_close(gb, {1.1, -0.2, -0.7, 0.9}, 1e-15);

  // without affine parameters: y = xhat, each row mean 0 and biased variance 1 / (1 + eps/var)
  Tensor y2 = empty({2, 4}, DType::Float64);
  kernels().layer_norm(x, Tensor(), Tensor(), 0.0, y2, mean, rstd);
  const double r = 1 / std::sqrt(1.25);  // row 0: var = 1.25
  const std::vector<double> y2_values = values(y2);
  check_close(std::vector<double>(y2_values.begin(), y2_values.begin() + 4),
              {-1.5 * r, -0.5 * r, 0.5 * r, 1.5 * r}, 1e-15);
}

TEST_CASE("layer_norm backward folds an addend into grad_x exactly as a separate add would") {
  const int64_t rows = 300, width = 48;  // enough rows for the threaded path
  Tensor x = randn({rows, width}, 11), w = randn({width}, 12), b = randn({width}, 13);
  Tensor g = randn({rows, width}, 14), addend = randn({rows, width}, 15);
  const ops::LayerNormResult r = ops::layer_norm(x, w, b, 1e-5);
  const ops::LayerNormGrads plain = ops::layer_norm_backward(g, x, w, r.mean, r.rstd, true);
  const ops::LayerNormGrads folded = ops::layer_norm_backward(g, x, w, r.mean, r.rstd, true, addend);
  CHECK_FALSE(plain.addend_folded);
  REQUIRE(folded.addend_folded);
  const std::vector<float> expected = ops::add(addend, plain.grad_x).to_vector<float>();
  CHECK(folded.grad_x.to_vector<float>() == expected);  // bit for bit
  CHECK(folded.grad_weight.to_vector<float>() == plain.grad_weight.to_vector<float>());
  CHECK(folded.grad_bias.to_vector<float>() == plain.grad_bias.to_vector<float>());
  // an addend the kernel cannot read as rows (a transposed view, another dtype) is left
  // to the caller, and grad_x is the norm's own
  Tensor addend_t = ops::transpose(randn({width, rows}, 16), 0, 1);
  const ops::LayerNormGrads strided = ops::layer_norm_backward(g, x, w, r.mean, r.rstd, false, addend_t);
  CHECK_FALSE(strided.addend_folded);
  CHECK(strided.grad_x.to_vector<float>() == plain.grad_x.to_vector<float>());
  CHECK_FALSE(ops::layer_norm_backward(g, x, w, r.mean, r.rstd, false, addend.to(DType::Float64)).addend_folded);
  // the backend refuses an addend that aliases grad_x or has the wrong shape
  Tensor gx = empty({rows, width}, DType::Float32), none;
  CHECK_THROWS_AS(kernels().layer_norm_backward(g, x, w, r.mean, r.rstd, gx, gx, none, none), Error);
  CHECK_THROWS_AS(kernels().layer_norm_backward(g, x, w, r.mean, r.rstd, randn({rows, width + 1}, 17), gx, none, none),
                  Error);
}

TEST_CASE("layer_norm float32 over many rows (threaded path, per-thread partials)") {
  const int64_t rows = 512, width = 96;
  std::vector<float> xs(rows * width), gs(rows * width, 1.0f), ws(width, 1.0f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < width; ++j) xs[r * width + j] = static_cast<float>((j % 2) ? r : -r) + 3;
  // every row is mean 3 +- r: xhat = +-1 (row 0 is constant: xhat = 0)
  Tensor x = f32(xs, {rows, width}), g = f32(gs, {rows, width}), w = f32(ws, {width});
  Tensor y = empty({rows, width}, DType::Float32);
  Tensor mean = empty({rows}, DType::Float32), rstd = empty({rows}, DType::Float32);
  kernels().layer_norm(x, w, Tensor(), 1e-12, y, mean, rstd);
  CHECK(values(y)[5 * width] == doctest::Approx(-1.0).epsilon(1e-6));
  CHECK(values(y)[5 * width + 1] == doctest::Approx(1.0).epsilon(1e-6));
  CHECK(values(mean)[7] == 3.0);
  Tensor gx = empty({rows, width}, DType::Float32), gw = empty({width}, DType::Float32);
  Tensor gb = empty({width}, DType::Float32);
  kernels().layer_norm_backward(g, x, w, mean, rstd, Tensor(), gx, gw, gb);
  // grad_bias = number of rows; grad_weight = sum of xhat = -(rows - 1) or +(rows - 1)
  CHECK(values(gb)[0] == 512.0);
  CHECK(values(gw)[0] == doctest::Approx(-511.0).epsilon(1e-5));
  CHECK(values(gw)[1] == doctest::Approx(511.0).epsilon(1e-5));
  // a constant upstream gradient through the normalisation is exactly zero
  double worst = 0;
  for (double v : values(gx)) worst = std::max(worst, std::abs(v));
  CHECK(worst < 1e-5);
}

// ---- GEMM ----------------------------------------------------------------------------

namespace {
// out[b] = alpha op(a) op(b) + beta out, with three plain loops
std::vector<double> naive_bmm(const std::vector<double>& a, const std::vector<double>& b,
                              const std::vector<double>& c, int64_t batches, int64_t a_batches,
                              int64_t b_batches, int64_t m, int64_t n, int64_t k, bool ta, bool tb,
                              double alpha, double beta) {
  std::vector<double> out(batches * m * n);
  for (int64_t z = 0; z < batches; ++z) {
    const double* pa = a.data() + (a_batches == 1 ? 0 : z * m * k);
    const double* pb = b.data() + (b_batches == 1 ? 0 : z * k * n);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0;
        for (int64_t p = 0; p < k; ++p) {
          const double av = ta ? pa[p * m + i] : pa[i * k + p];
          const double bv = tb ? pb[j * k + p] : pb[p * n + j];
          acc += av * bv;
        }
        const int64_t at = z * m * n + i * n + j;
        out[at] = alpha * acc + (beta == 0 ? 0.0 : beta * c[at]);
      }
  }
  return out;
}
std::vector<double> ramp(int64_t n, double scale, double shift) {
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = std::sin(scale * i + shift);  // non-zero, varied
  return v;
}
}  // namespace

TEST_CASE("bmm matches a naive triple loop: transposes, alpha/beta, batch broadcast") {
  struct Shape3 {
    int64_t batches, a_batches, b_batches, m, n, k;
  };
  for (Shape3 s : {Shape3{3, 3, 3, 5, 7, 4}, Shape3{4, 1, 4, 6, 3, 9}, Shape3{2, 2, 1, 67, 45, 33},
                   Shape3{1, 1, 1, 130, 140, 150}, Shape3{16, 16, 16, 40, 40, 64}}) {
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      for (DType dtype : {DType::Float64, DType::Float32}) {
        INFO("batches ", s.batches, " m ", s.m, " n ", s.n, " k ", s.k, " ta ", ta, " tb ", tb,
             " dtype ", dtype_name(dtype));
        const auto av = ramp(s.a_batches * s.m * s.k, 0.37, 0.1);
        const auto bv = ramp(s.b_batches * s.k * s.n, 0.53, 0.7);
        const auto cv = ramp(s.batches * s.m * s.n, 0.11, 0.3);
        const Shape a_shape = ta ? Shape{s.a_batches, s.k, s.m} : Shape{s.a_batches, s.m, s.k};
        const Shape b_shape = tb ? Shape{s.b_batches, s.n, s.k} : Shape{s.b_batches, s.k, s.n};
        Tensor a = f64(av, a_shape).to(dtype), b = f64(bv, b_shape).to(dtype);
        for (double beta : {0.0, 0.5}) {
          Tensor out = f64(cv, {s.batches, s.m, s.n}).to(dtype);
          if (beta == 0.0) kernels().fill(out, kNaN);  // beta = 0 must never read out
          kernels().bmm(a, b, out, ta, tb, 1.5, beta);
          const auto want = naive_bmm(av, bv, cv, s.batches, s.a_batches, s.b_batches, s.m, s.n,
                                      s.k, ta, tb, 1.5, beta);
          check_close(values(out.contiguous()), want, dtype == DType::Float64 ? 1e-12 : 2e-5);
        }
      }
    }
  }
  Tensor a = zeros({1, 2, 3}), b = zeros({1, 4, 5}), out = empty({1, 2, 5});
  const std::string msg = error_of([&] { kernels().bmm(a, b, out, false, false, 1, 0); });
  CHECK(msg.find("bmm") != std::string::npos);
  CHECK(msg.find("[1, 4, 5]") != std::string::npos);
}

TEST_CASE("every Eigen GEMM build (baseline, AVX2+FMA, AVX-512) matches the naive loop") {
  // bmm runs one of them; call each this CPU runs directly so none goes untested here
  const int64_t m = 37, n = 29, k = 41;
  const auto av = ramp(2 * m * k, 0.19, 0.2), bv = ramp(k * n, 0.23, 0.4);
  const std::vector<float> af(av.begin(), av.end()), bf(bv.begin(), bv.end());
  const auto want = naive_bmm(av, bv, {}, 2, 2, 1, m, n, k, false, true, 1.0, 0.0);
  const cpu::gemm::GemmProblem problem{2, m, n, k, m * k, 0, false, true, false};
  std::vector<float> c(2 * m * n);
  cpu::gemm::portable::bmm(af.data(), bf.data(), c.data(), problem, 1.0f, 0.0f);
  check_close(std::vector<double>(c.begin(), c.end()), want, 2e-5);
  const std::string isa = cpu::gemm::isa_in_use();
  MESSAGE("bmm uses the ", isa, " build");
  auto check_build = [&](auto bmm_double, auto bmm_float) {
    std::vector<double> cd(2 * m * n);
    bmm_double(av.data(), bv.data(), cd.data(), problem, 1.0, 0.0);
    check_close(cd, want, 1e-12);
    std::fill(c.begin(), c.end(), 0.0f);
    bmm_float(af.data(), bf.data(), c.data(), problem, 1.0f, 0.0f);
    check_close(std::vector<double>(c.begin(), c.end()), want, 2e-5);
  };
  using DoubleBmm = void (*)(const double*, const double*, double*, const cpu::gemm::GemmProblem&, double, double);
  using FloatBmm = void (*)(const float*, const float*, float*, const cpu::gemm::GemmProblem&, float, float);
  if (cpu::gemm::avx2::compiled() && cpu::cpu_has_avx2_fma()) {
    check_build(static_cast<DoubleBmm>(cpu::gemm::avx2::bmm), static_cast<FloatBmm>(cpu::gemm::avx2::bmm));
  } else {
    MESSAGE("SKIPPED the AVX2+FMA build: not compiled in or this CPU lacks AVX2/FMA");
  }
  if (cpu::gemm::avx512::compiled() && cpu::cpu_has_avx512()) {
    check_build(static_cast<DoubleBmm>(cpu::gemm::avx512::bmm), static_cast<FloatBmm>(cpu::gemm::avx512::bmm));
    if (std::getenv("MMS_CPU_GEMM") == nullptr) CHECK(isa == "avx512");  // the widest one runs
  } else {
    MESSAGE("SKIPPED the AVX-512 build: not compiled in or this CPU lacks AVX-512 F/DQ");
  }
}

namespace {
// `runs`, and where it is false, a line saying why the test skips: a kernel that this build
// or CPU lacks shows up as a skip in the output rather than as a silent pass.
bool runs_here(bool runs, const char* why_not) {
  if (!runs) MESSAGE("SKIPPED: ", why_not);
  return runs;
}

// Whether this build and CPU run our AVX-512 float32 GEMM.
bool our_avx512_gemm_runs_here() {
  return runs_here(cpu::gemm::avx512_sgemm::compiled() && cpu::cpu_has_avx512(),
                   "the AVX-512 float32 GEMM is not compiled in or this CPU lacks AVX-512 F/DQ");
}
}  // namespace

// tensor/cpu/sgemm_avx512.cpp, called directly: every transpose combination, row tails
// (m not a multiple of the 8-row strip), column tails (n not a multiple of the 48-column
// panel), depths across several 384-deep blocks, alpha and beta (beta = 0 never reads c),
// row strides wider than the matrices (c's padding left untouched), batch broadcast, and
// one or two threads split over the batch, by rows, or by columns (the strips then packed
// by both threads together). And the narrow path (n = 16..64, a multiple of 16): 6-row
// tile tails, a transposed op(b) with a depth that is not a multiple of 16, batches per
// thread and rows split.
TEST_CASE("our AVX-512 float32 GEMM matches the naive loop at every edge") {
  if (!our_avx512_gemm_runs_here()) return;
  struct Case {
    int64_t batches, a_batches, m, n, k, pad;
    int threads;
  };
  const float kSentinel = 12345.0f;
  for (const Case cs : {Case{1, 1, 37, 100, 33, 0, 1}, Case{1, 1, 9, 145, 800, 3, 2}, Case{2, 1, 7, 96, 385, 0, 2},
                        Case{3, 3, 130, 96, 40, 5, 2}, Case{1, 1, 200, 97, 64, 0, 2}, Case{1, 1, 1, 192, 32, 0, 1},
                        Case{1, 1, 45, 300, 400, 2, 2}, Case{1, 1, 37, 64, 64, 0, 1}, Case{1, 1, 13, 16, 17, 3, 2},
                        Case{3, 3, 50, 48, 40, 2, 2}, Case{2, 1, 9, 32, 300, 0, 2}, Case{1, 1, 200, 64, 130, 1, 2}}) {
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      for (const double beta : {0.0, 0.5}) {
        INFO("batches ", cs.batches, " m ", cs.m, " n ", cs.n, " k ", cs.k, " pad ", cs.pad, " threads ", cs.threads,
             " ta ", ta, " tb ", tb, " beta ", beta);
        const int64_t m = cs.m, n = cs.n, k = cs.k, pad = cs.pad;
        const auto av = ramp(cs.a_batches * m * k, 0.37, 0.1), bv = ramp(k * n, 0.53, 0.7);
        const auto cv = ramp(cs.batches * m * n, 0.11, 0.3);
        const auto want = naive_bmm(av, bv, cv, cs.batches, cs.a_batches, 1, m, n, k, ta, tb, 1.5, beta);
        // stored rows padded by `pad` floats (the GEMM must read and write through lda/ldb/ldc)
        const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
        const int64_t lda = a_cols + pad, ldb = b_cols + pad, ldc = n + pad;
        std::vector<float> a(cs.a_batches * a_rows * lda, kNaN), b(b_rows * ldb, kNaN);
        std::vector<float> c(cs.batches * m * ldc, kSentinel);
        for (int64_t z = 0; z < cs.a_batches; ++z)
          for (int64_t r = 0; r < a_rows; ++r)
            for (int64_t q = 0; q < a_cols; ++q) a[(z * a_rows + r) * lda + q] = float(av[(z * a_rows + r) * a_cols + q]);
        for (int64_t r = 0; r < b_rows; ++r)
          for (int64_t q = 0; q < b_cols; ++q) b[r * ldb + q] = float(bv[r * b_cols + q]);
        for (int64_t z = 0; z < cs.batches; ++z)
          for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j)
              c[(z * m + i) * ldc + j] = beta == 0.0 ? kNaN : float(cv[(z * m + i) * n + j]);
        cpu::gemm::GemmProblem problem{cs.batches, m, n, k, cs.a_batches == 1 ? 0 : a_rows * lda, 0, ta, tb,
                                       cs.threads};
        problem.lda = lda, problem.ldb = ldb, problem.ldc = ldc;
        REQUIRE(cpu::gemm::avx512_sgemm::takes(problem));
        cpu::gemm::avx512_sgemm::bmm(a.data(), b.data(), c.data(), problem, 1.5f, float(beta));
        std::vector<double> got;
        bool padding_kept = true;
        for (int64_t z = 0; z < cs.batches; ++z)
          for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < ldc; ++j) {
              const float v = c[(z * m + i) * ldc + j];
              if (j < n) got.push_back(v); else padding_kept = padding_kept && v == kSentinel;
            }
        CHECK(padding_kept);
        check_close(got, want, 1e-6 * double(k));  // float32 sums of k products of values in [-1, 1]
      }
    }
  }
  // Between the narrow path and two panels, or shallow: left to Eigen.
  CHECK_FALSE(cpu::gemm::avx512_sgemm::takes({1, 400, 95, 64, 0, 0, false, true, 1}));
  CHECK_FALSE(cpu::gemm::avx512_sgemm::takes({1, 400, 80, 64, 0, 0, false, true, 1}));
  CHECK_FALSE(cpu::gemm::avx512_sgemm::takes({1, 400, 50, 64, 0, 0, false, true, 1}));
  CHECK_FALSE(cpu::gemm::avx512_sgemm::takes({1, 400, 768, 16, 0, 0, false, true, 1}));
  CHECK_FALSE(cpu::gemm::avx512_sgemm::takes({1, 400, 64, 15, 0, 0, false, true, 1}));
  CHECK(cpu::gemm::avx512_sgemm::takes({1, 400, 64, 16, 0, 0, false, true, 1}));
}

// The narrow path's remaining corners: a batch of different b's (b_step != 0; b^T
// transposed per batch, by whichever thread runs it), two batches on three threads (the
// rows of each batch split), a bias together with beta != 0, and a b too deep for L2
// going to Eigen instead.
TEST_CASE("our AVX-512 GEMM's narrow path: batched b, rows split per batch, bias with beta") {
  if (!our_avx512_gemm_runs_here()) return;
  const int64_t m = 31, n = 48, k = 70;
  for (const int threads : {1, 2, 3}) {
    for (const int64_t batches : {2, 4}) {
      for (const bool tb : {false, true}) {
        INFO("threads ", threads, " batches ", batches, " tb ", tb);
        const auto av = ramp(batches * m * k, 0.37, 0.1), bv = ramp(batches * k * n, 0.53, 0.7);
        const auto cv = ramp(batches * m * n, 0.11, 0.3), biasv = ramp(n, 0.9, 0.2);
        auto want = naive_bmm(av, bv, cv, batches, batches, batches, m, n, k, false, tb, 0.5, 2.0);
        for (int64_t z = 0; z < batches; ++z)
          for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) want[(z * m + i) * n + j] += biasv[j];
        const std::vector<float> a(av.begin(), av.end()), b(bv.begin(), bv.end()), bias(biasv.begin(), biasv.end());
        std::vector<float> c(cv.begin(), cv.end());
        const cpu::gemm::GemmProblem problem{batches, m, n, k, m * k, k * n, false, tb, threads};
        REQUIRE(cpu::gemm::avx512_sgemm::takes(problem));
        cpu::gemm::avx512_sgemm::bmm(a.data(), b.data(), c.data(), problem, 0.5f, 2.0f, bias.data());
        check_close(std::vector<double>(c.begin(), c.end()), want, 1e-6 * double(k));
      }
    }
  }
  // op(b) past 1 MiB (k * n > 2^18 floats): re-read for every 6-row tile it would not stay in L2.
  CHECK_FALSE(cpu::gemm::avx512_sgemm::takes({1, 64, 64, 4097, 0, 0, true, false, 1}));
  CHECK(cpu::gemm::avx512_sgemm::takes({1, 64, 64, 4096, 0, 0, true, false, 1}));
}

// A row of C does not depend on the other rows computed with it: the first 9 rows of a
// 40-row product, computed alone (one thread, then two), are bit-identical to the same
// rows in the whole product. (What makes a text batch trimmed to its longest sequence
// give the same linear outputs as the 77-token batch.)
TEST_CASE("our AVX-512 float32 GEMM gives each row the same bits whatever rows come with it") {
  if (!our_avx512_gemm_runs_here()) return;
  for (const int64_t n : {192, 64}) {  // the panel path and the narrow one
    INFO("n ", n);
    const int64_t m = 40, k = 900;
    const auto av = ramp(m * k, 0.29, 0.5), bv = ramp(n * k, 0.31, 0.2);
    const std::vector<float> a(av.begin(), av.end()), b(bv.begin(), bv.end());
    std::vector<float> whole(m * n), part(9 * n);
    cpu::gemm::avx512_sgemm::bmm(a.data(), b.data(), whole.data(), {1, m, n, k, 0, 0, false, true, 2}, 1.0f, 0.0f);
    for (const int threads : {1, 2}) {
      cpu::gemm::avx512_sgemm::bmm(a.data(), b.data(), part.data(), {1, 9, n, k, 0, 0, false, true, threads}, 1.0f,
                                   0.0f);
      CHECK(std::memcmp(part.data(), whole.data(), part.size() * sizeof(float)) == 0);
    }
  }
}

// CpuBackend::linear_epilogue: with our AVX-512 kernel in use, the bias is added in the
// kernel's stores (no separate pass) for float32 shapes it takes; everything else is
// refused, having written nothing, and ops::linear then runs the unfused passes.
TEST_CASE("linear's bias epilogue on the CPU adds the bias inside our AVX-512 kernel") {
  const int64_t m = 37, k = 100, n = 130;
  const auto xv = ramp(m * k, 0.21, 0.4), wv = ramp(n * k, 0.43, 0.9), bv = ramp(n, 1.7, 0.2);
  const Tensor x = f64(xv, {m, k}).to(DType::Float32), w = f64(wv, {n, k}).to(DType::Float32);
  const Tensor bias = f64(bv, {n}).to(DType::Float32);
  std::vector<double> want(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double acc = bv[j];
      for (int64_t p = 0; p < k; ++p) acc += xv[i * k + p] * wv[j * k + p];
      want[i * n + j] = acc;
    }
  Tensor out = full({m, n}, kNaN, DType::Float32), none;
  const bool ours = std::string(cpu::gemm::isa_in_use()) == "avx512" && cpu::cpu_has_avx512();
  const bool fused = kernels().linear_epilogue(x, w, bias, LinearEpilogue::Bias, out, none);
  CHECK(fused == ours);
  if (fused) {
    check_close(out, want, 1e-6 * double(k));
    // ops::linear takes the same path: the same bits
    const Tensor through_ops = ops::linear(x, w, bias);
    CHECK(std::memcmp(through_ops.raw_data(), out.raw_data(), out.numel() * sizeof(float)) == 0);
  } else {
    MESSAGE("SKIPPED the fused path: our AVX-512 GEMM is not in use here (", cpu::gemm::isa_in_use(), ")");
  }
  check_close(ops::linear(x, w, bias), want, 1e-6 * double(k));  // fused or not, the same function
  // a 64-wide layer takes the narrow path, bias and all
  if (ours) {
    const int64_t narrow_n = 64;
    Tensor out64wide = full({m, narrow_n}, kNaN, DType::Float32);
    CHECK(kernels().linear_epilogue(x, ops::narrow(w, 0, 0, narrow_n).contiguous(),
                                    ops::narrow(bias, 0, 0, narrow_n).contiguous(), LinearEpilogue::Bias, out64wide,
                                    none));
    std::vector<double> want64(m * narrow_n);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < narrow_n; ++j) want64[i * narrow_n + j] = want[i * n + j];
    check_close(out64wide, want64, 1e-6 * double(k));
  }
  // refused, out untouched: a GELU epilogue, float64, a 50-wide layer (neither path)
  Tensor untouched = full({m, n}, 7.0, DType::Float32);
  CHECK_FALSE(kernels().linear_epilogue(x, w, bias, LinearEpilogue::GeluTanhBias, untouched, none));
  Tensor out64 = full({m, n}, 7.0, DType::Float64);
  CHECK_FALSE(kernels().linear_epilogue(x.to(DType::Float64), w.to(DType::Float64), bias.to(DType::Float64),
                                        LinearEpilogue::Bias, out64, none));
  Tensor narrow_out = full({m, 50}, 7.0, DType::Float32);
  CHECK_FALSE(kernels().linear_epilogue(x, ops::narrow(w, 0, 0, 50).contiguous(), ops::narrow(bias, 0, 0, 50).contiguous(),
                                        LinearEpilogue::Bias, narrow_out, none));
  for (const Tensor* t : {&untouched, &out64, &narrow_out}) {
    const std::vector<double> v = values(*t);
    CHECK(std::all_of(v.begin(), v.end(), [](double e) { return e == 7.0; }));
  }
}

// tensor/cpu/activation_avx2.cpp: the 8-wide quick_gelu against float64 formulas over
// -90..90 (both sigmoid tails, exp overflowing and underflowing), lengths with 8-wide
// and 1024-block tails, and the special values; the backend (vector path when the CPU
// has AVX2) gives the same values.
TEST_CASE("quick_gelu's AVX2 kernels match float64 within float32 rounding") {
  if (!runs_here(cpu::activation::avx2::compiled() && cpu::cpu_has_avx2_fma(),
                 "the AVX2 quick_gelu is not compiled in or this CPU lacks AVX2/FMA"))
    return;
  const int64_t n = 2 * 1024 + 13;
  std::vector<float> x(n), dy(n);
  for (int64_t i = 0; i < n; ++i) {
    x[i] = static_cast<float>(-90.0 + 180.0 * double(i) / double(n - 1)) * (i % 3 == 0 ? 0.05f : 1.0f);
    dy[i] = static_cast<float>(std::sin(0.37 * double(i)) + 0.1);
  }
  std::vector<float> y(n), dx(n);
  cpu::activation::avx2::quick_gelu(x.data(), y.data(), n);
  cpu::activation::avx2::quick_gelu_backward(dy.data(), x.data(), dx.data(), n);
  // The scalar kernel on the same values: the backend takes its strided loop (libm's
  // expf) for a transposed view, here [3, 687] read as [687, 3].
  REQUIRE(n == 3 * 687);
  const Tensor x_view = ops::transpose(f32(x, {3, 687}), 0, 1), dy_view = ops::transpose(f32(dy, {3, 687}), 0, 1);
  REQUIRE(!x_view.is_contiguous());
  Tensor y_scalar = empty({687, 3}), dx_scalar = empty({687, 3});
  kernels().unary(UnaryOp::QuickGelu, x_view, y_scalar, 0, 0);
  kernels().unary_backward(UnaryOp::QuickGelu, dy_view, x_view, dx_scalar, 0, 0);
  // The float32 formula's own error, which the bound allows (and the scalar kernel is
  // checked against it too): a few ulps of the result, plus the rounding of the exp
  // argument z = 1.702 x to float32 (relative 6e-8 of z, which moves sigmoid(z) by a
  // relative z (1 - s)), plus for the derivative the rounding of s before 1 - s (half an
  // ulp of 1, times |z| s). Below x = -52.1, exp(-z) overflows
  // float32 in the vector kernel, which then returns 0 where the true value is below
  // 2e-37 (y) and 3e-37 |dy| (the derivative): the absolute floors.
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i], s = 1.0 / (1.0 + std::exp(-1.702 * v));
    const double want = v * s, slope_terms = s + std::abs(1.702 * v * s * (1.0 - s));
    const double want_dx = double(dy[i]) * (s + 1.702 * v * s * (1.0 - s));
    const double z = 1.702 * std::abs(v);
    const double y_bound = (6e-7 + 1.2e-7 * z * (1.0 - s)) * std::abs(want) + 2e-37;
    const double dx_bound =
        std::abs(double(dy[i])) * ((6e-7 + 1.2e-7 * z) * slope_terms + 6e-8 * z * s + 3e-37);
    const int64_t at = (i % 687) * 3 + i / 687;  // x[i] = x_view[i % 687][i / 687]
    const double scalar_y = y_scalar.data<float>()[at], scalar_dx = dx_scalar.data<float>()[at];
    INFO("x = ", v, ": y ", y[i], " (scalar ", scalar_y, ", want ", want, "), dx ", dx[i], " (scalar ", scalar_dx,
         ", want ", want_dx, ")");
    CHECK(std::abs(y[i] - want) <= y_bound);
    CHECK(std::abs(dx[i] - want_dx) <= dx_bound);
    CHECK(std::abs(scalar_y - want) <= y_bound);
    CHECK(std::abs(scalar_dx - want_dx) <= dx_bound);
  }
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> special = {inf, -inf, nan, 0.0f, -0.0f, 1e-40f, -1e-40f, 3e38f};
  std::vector<float> ys(special.size()), ones(special.size(), 1.0f), ds(special.size());
  cpu::activation::avx2::quick_gelu(special.data(), ys.data(), int64_t(special.size()));
  cpu::activation::avx2::quick_gelu_backward(ones.data(), special.data(), ds.data(), int64_t(special.size()));
  CHECK(ys[0] == inf);                       // inf * sigmoid(inf) = inf
  CHECK(std::isnan(ys[1]));                  // -inf * 0, as the scalar kernel
  CHECK(std::isnan(ys[2]));
  CHECK(ys[3] == 0.0f);
  CHECK(std::abs(ys[5] - 0.5e-40f) <= 1e-45f);  // subnormal x: x / 2
  CHECK(ys[7] == 3e38f);
  CHECK(std::isnan(ds[0]));                  // 1 + inf * 0, as the scalar formula
  CHECK(ds[3] == 0.5f);                      // the slope at 0 is sigmoid(0)
  CHECK(std::isnan(ds[2]));
  // a run starting one element later gives the same values (no alignment-dependent path)
  std::vector<float> y_shifted(n - 1), dx_shifted(n - 1);
  cpu::activation::avx2::quick_gelu(x.data() + 1, y_shifted.data(), n - 1);
  cpu::activation::avx2::quick_gelu_backward(dy.data() + 1, x.data() + 1, dx_shifted.data(), n - 1);
  CHECK(std::memcmp(y_shifted.data(), y.data() + 1, (n - 1) * sizeof(float)) == 0);
  CHECK(std::memcmp(dx_shifted.data(), dx.data() + 1, (n - 1) * sizeof(float)) == 0);
  // through the backend: the same values (its contiguous float32 runs take this kernel)
  const Tensor xt = f32(x, {n}), dyt = f32(dy, {n});
  Tensor yt = empty({n}), dxt = empty({n});
  kernels().unary(UnaryOp::QuickGelu, xt, yt, 0, 0);
  kernels().unary_backward(UnaryOp::QuickGelu, dyt, xt, dxt, 0, 0);
  CHECK(std::memcmp(yt.raw_data(), y.data(), n * sizeof(float)) == 0);
  CHECK(std::memcmp(dxt.raw_data(), dx.data(), n * sizeof(float)) == 0);
}

// The AVX-512 build of quick_gelu (activation_avx512.cpp) runs the same operations 16 at
// a time: every element's bits equal the AVX2 build's (so which one the CPU runs does not
// change a result), over a sweep of -100..100, a million float bit patterns of every
// exponent, and the special values; lengths with 16- and 8-wide tails.
TEST_CASE("quick_gelu's AVX-512 kernels give the AVX2 kernels' bits") {
  if (!runs_here(cpu::activation::avx512::compiled() && cpu::cpu_has_avx512() && cpu::activation::avx2::compiled(),
                 "the AVX-512 quick_gelu is not compiled in or this CPU lacks AVX-512"))
    return;
  std::vector<float> x;
  for (int64_t i = 0; i <= 200000; ++i) x.push_back(static_cast<float>(-100.0 + 200.0 * double(i) / 200000.0));
  uint32_t state = 12345u;
  for (int64_t i = 0; i < 1000000; ++i) {
    state = state * 1664525u + 1013904223u;  // every exponent, both signs, NaN and inf included
    float v;
    std::memcpy(&v, &state, sizeof v);
    x.push_back(v);
  }
  for (float v : {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                  std::numeric_limits<float>::quiet_NaN(), 0.0f, -0.0f, 1e-40f, -1e-40f, 3e38f})
    x.push_back(v);
  x.resize(x.size() - x.size() % 16 + 13);  // a tail that is neither 16- nor 8-wide
  const int64_t n = int64_t(x.size());
  std::vector<float> dy(n);
  for (int64_t i = 0; i < n; ++i) dy[i] = static_cast<float>(std::sin(0.37 * double(i)) + 0.1);
  std::vector<float> y8(n), y16(n), dx8(n), dx16(n);
  cpu::activation::avx2::quick_gelu(x.data(), y8.data(), n);
  cpu::activation::avx512::quick_gelu(x.data(), y16.data(), n);
  cpu::activation::avx2::quick_gelu_backward(dy.data(), x.data(), dx8.data(), n);
  cpu::activation::avx512::quick_gelu_backward(dy.data(), x.data(), dx16.data(), n);
  auto same_bits = [](float a, float b) { return std::isnan(a) ? std::isnan(b) : std::memcmp(&a, &b, sizeof a) == 0; };
  int64_t y_differ = 0, dx_differ = 0;
  for (int64_t i = 0; i < n; ++i) {
    y_differ += !same_bits(y8[i], y16[i]);
    dx_differ += !same_bits(dx8[i], dx16[i]);
  }
  CHECK(y_differ == 0);
  CHECK(dx_differ == 0);
}

// ---- indexing ------------------------------------------------------------------------

TEST_CASE("index_select_rows / index_add_rows with repeats and bounds checks") {
  Tensor table = f32({0, 1, 10, 11, 20, 21, 30, 31}, {4, 2});
  Tensor index = i64({2, 0, 2}, {3});
  Tensor out = empty({3, 2}, DType::Float32);
  kernels().index_select_rows(table, index, out);
  check_close(out, {20, 21, 0, 1, 20, 21}, 0);

  // a strided index (every other element of [3, 9, 1, 9])
  Tensor idx_storage = i64({3, 9, 1, 9}, {4});
  Tensor strided_index = make_view(idx_storage, {2}, {2}, 0);
  Tensor out2 = empty({2, 2}, DType::Float32);
  kernels().index_select_rows(table, strided_index, out2);
  check_close(out2, {30, 31, 10, 11}, 0);

  Tensor grad = f64({1, 2, 3, 4, 5, 6}, {3, 2});
  Tensor table_grad = zeros({4, 2}, DType::Float64);
  kernels().index_add_rows(grad, index, table_grad);
  check_close(table_grad, {3, 4, 0, 0, 1 + 5, 2 + 6, 0, 0}, 0);

  Tensor bad = i64({1, 4}, {2});
  Tensor out3 = empty({2, 2}, DType::Float32);
  const std::string msg = error_of([&] { kernels().index_select_rows(table, bad, out3); });
  CHECK(msg.find("index_select_rows") != std::string::npos);
  CHECK(msg.find("index 4") != std::string::npos);
  const std::string neg = error_of([&] {
    Tensor g2 = zeros({1, 2}, DType::Float64);
    kernels().index_add_rows(g2, i64({-1}, {1}), table_grad);
  });
  CHECK(neg.find("index_add_rows: index -1") != std::string::npos);

  // a wide table takes the column-split threaded path; repeats still add up
  const int64_t width = 4096;
  Tensor wide_grad = full({3, width}, 1.0, DType::Float32);
  Tensor wide = zeros({2, width}, DType::Float32);
  kernels().index_add_rows(wide_grad, i64({1, 1, 0}, {3}), wide);
  CHECK(values(wide)[0] == 1.0);
  CHECK(values(wide)[width + width - 1] == 2.0);
}

TEST_CASE("gather_last / scatter_add_last") {
  Tensor x = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor index = i64({2, 0, 1, 1}, {2, 2});
  Tensor out = empty({2, 2}, DType::Float64);
  kernels().gather_last(x, index, out);
  check_close(out, {3, 1, 5, 5}, 0);

  Tensor grad = f64({0.5, 1.5, 2.0, 3.0}, {2, 2});
  Tensor acc = zeros({2, 3}, DType::Float64);
  kernels().scatter_add_last(grad, index, acc);
  check_close(acc, {1.5, 0, 0.5, 0, 5.0, 0}, 0);

  Tensor bad = i64({0, 3, 0, 0}, {2, 2});
  const std::string msg = error_of([&] { kernels().gather_last(x, bad, out); });
  CHECK(msg.find("gather_last: index 3") != std::string::npos);
  CHECK(msg.find("0..2") != std::string::npos);
}

// ---- attention -----------------------------------------------------------------------

namespace {
// B = 2, H = 1, L = 3, D = 2 inputs shared by the attention tests (see tools-free numpy)
Tensor att_q() {
  return f64({0.1, 0.2, 0.3, -0.1, -0.5, 0.4, 1.0, 0.0, 0.0, 1.0, 0.5, 0.5}, {2, 1, 3, 2});
}
Tensor att_k() {
  return f64({0.2, -0.3, 0.4, 0.1, -0.2, 0.5, 0.3, 0.3, -0.6, 0.2, 0.1, -0.4}, {2, 1, 3, 2});
}
Tensor att_v() {
  return f64({1.0, 2.0, -1.0, 0.5, 0.3, -0.7, 0.5, 0.5, 2.0, -1.0, -0.3, 0.8}, {2, 1, 3, 2});
}
Tensor att_keep() { return from_vector<uint8_t>({1, 1, 0, 0, 1, 1}, {2, 3}); }
}  // namespace

namespace {
// The GEMM path's masked softmax on the same inputs: its lse is the fused kernel's and
// P v is the attention output; hidden keys are exactly 0, a row with no visible key is
// all 0; bf16 probabilities are the float32 ones rounded (exactly).
void check_masked_softmax(bool causal, bool keep, const std::vector<double>& want_out,
                          const std::vector<double>& want_lse) {
  Tensor scores = empty({2, 1, 3, 3}, DType::Float64);
  Tensor scores3 = ops::reshape(scores, {2, 3, 3});
  kernels().bmm(ops::reshape(att_q(), {2, 3, 2}), ops::reshape(att_k(), {2, 3, 2}), scores3, false, true, 0.7, 0.0);
  const Tensor mask = keep ? att_keep() : Tensor();
  Tensor probs = empty({2, 1, 3, 3}, DType::Float64), lse = empty({2, 1, 3}, DType::Float64);
  kernels().attention_softmax(scores, mask, causal, probs, lse);
  check_close(lse, want_lse, 1e-14);
  Tensor out = empty({2, 3, 2}, DType::Float64);
  kernels().bmm(ops::reshape(probs, {2, 3, 3}), ops::reshape(att_v(), {2, 3, 2}), out, false, false, 1.0, 0.0);
  check_close(out, want_out, 1e-14);
  const std::vector<double> p = values(probs);
  const std::vector<uint8_t> keep_bytes = {1, 1, 0, 0, 1, 1};
  for (int b = 0; b < 2; ++b)
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) {
        const bool visible = (!causal || j <= i) && (!keep || keep_bytes[b * 3 + j] != 0);
        if (!visible) CHECK(p[(b * 3 + i) * 3 + j] == 0.0);
      }
  // float32 scores: float32 probabilities without lse, and bf16 ones
  const Tensor scores32 = scores.to(DType::Float32);
  Tensor p32 = empty({2, 1, 3, 3}, DType::Float32), p16 = empty({2, 1, 3, 3}, DType::BFloat16);
  Tensor no_lse;
  kernels().attention_softmax(scores32, mask, causal, p32, no_lse);
  kernels().attention_softmax(scores32, mask, causal, p16, no_lse);
  check_close(p32, p, 1e-6);
  CHECK(values(p16.to(DType::Float32)) == values(p32.to(DType::BFloat16).to(DType::Float32)));
  // float64 scores cannot give float32 probabilities: refused, naming the op and dtypes
  const std::string msg = error_of([&] { kernels().attention_softmax(scores, mask, causal, p32, no_lse); });
  CHECK(msg.find("attention_softmax: probs must be float64 or bfloat16, got float32") != std::string::npos);
}
}  // namespace

TEST_CASE("attention forward with key padding, causal, and a query with no key") {
  struct Case {
    bool causal, keep;
    std::vector<double> out, lse;
  };
  const std::vector<Case> cases = {
      {false, true,
       {-0.03498571533277944, 1.2237607135004156, -0.006999885668907524, 1.2447500857483194,
        -0.020996913544449602, 1.2342523148416629, 0.5737552056108928, 0.11619157821756225,
        1.0880114746888703, -0.28626984975650727, 0.8298770541754472, -0.08425160761556738},
       {0.7007595555486972, 0.7631716803598645, 0.5603676643551009, 0.5478641506062616,
        0.6450369938177538, 0.5708002977448283}},
      {true, false,
       {1.0, 2.0, -0.006999885668907524, 1.2447500857483194, 0.11166894931838887,
        0.4348388578416211, 0.5, 0.5, 1.2237607135004154, -0.22376071350041538,
        0.6943748255426918, 0.15573900074021677},
       {-0.028, 0.7631716803598645, 1.093597850182317, 0.21, 0.8687595555486971,
        1.0997319342782372}},
      // both: batch 1's first query sees only key 0, which is padded -> out 0, lse -inf
      {true, true,
       {1.0, 2.0, -0.006999885668907524, 1.2447500857483194, -0.020996913544449602,
        1.2342523148416629, 0.0, 0.0, 2.0, -1.0, 0.8298770541754472, -0.08425160761556738},
       {-0.028, 0.7631716803598645, 0.5603676643551009, -kInf, 0.14, 0.5708002977448283}},
  };
  for (const Case& c : cases) {
    INFO("causal ", c.causal, " key_keep ", c.keep);
    Tensor out = empty({2, 1, 3, 2}, DType::Float64), lse = empty({2, 1, 3}, DType::Float64);
    kernels().attention(att_q(), att_k(), att_v(), c.keep ? att_keep() : Tensor(), c.causal, 0.7, out,
                    lse);
    check_close(out, c.out, 1e-14);
    check_close(lse, c.lse, 1e-14);
    // float32 inputs with a float32 lse
    Tensor out32 = empty({2, 1, 3, 2}, DType::Float32), lse32 = empty({2, 1, 3}, DType::Float32);
    kernels().attention(att_q().to(DType::Float32), att_k().to(DType::Float32),
                    att_v().to(DType::Float32), c.keep ? att_keep() : Tensor(), c.causal, 0.7,
                    out32, lse32);
    check_close(out32, c.out, 1e-6);
    check_close(lse32, c.lse, 1e-6);
    check_masked_softmax(c.causal, c.keep, c.out, c.lse);
  }
  // an int64 key_keep means the same as the uint8 one
  Tensor out = empty({2, 1, 3, 2}, DType::Float64), lse = empty({2, 1, 3}, DType::Float32);
  kernels().attention(att_q(), att_k(), att_v(), i64({1, 1, 0, 0, 1, 1}, {2, 3}), false, 0.7, out, lse);
  check_close(lse, {0.7007595555486972, 0.7631716803598645, 0.5603676643551009,
                    0.5478641506062616, 0.6450369938177538, 0.5708002977448283},
              1e-6);
}

TEST_CASE("attention backward matches finite differences of a reference") {
  // numpy central differences (h = 1e-6) of sum(grad_out * out): accurate to ~1e-9
  Tensor go = f64({0.3, -0.2, 0.1, 0.4, -0.5, 0.2, 0.2, 0.2, -0.1, 0.3, 0.6, -0.4}, {2, 1, 3, 2});
  struct Case {
    bool causal;
    std::vector<double> dq, dk, dv;
  };
  const std::vector<Case> cases = {
      {false,
       {-0.010487148013882397, -0.020974295972253643, -0.02799862801605713, -0.055997256082074294,
        0.024489198680033297, 0.04897839734341325, -0.011543147798720454, 0.00989412669016865,
        0.09028457615967156, -0.0773867796066696, -0.2571712332755105, 0.22043248570080556},
       {0.1084645127408246, -0.05249056336531499, -0.1084645127408246, 0.05249056336531499, 0.0,
        0.0, 0.0, 0.0, 0.20018394921161867, 0.05471577210758305, -0.20018394921161867,
        -0.05471577210758305},
       {-0.050348623195639576, 0.19999890306099388, -0.0496513768016415, 0.20000109697271284,
        0.0, 0.0, 0.0, 0.0, 0.310380924417597, 0.06052333124673125, 0.3896190755470208,
        0.039476668760307615}},
      {true,
       {0.0, 0.0, -0.02799862801605713, -0.055997256082074294, 0.024489198680033297,
        0.04897839734341325, 0.0, 0.0, 0.0, 0.0, -0.2571712332755105, 0.22043248570080556},
       {0.10322093874637339, -0.06297771137919739, -0.10322093874637339, 0.06297771137919739, 0.0,
        0.0, 0.0, 0.0, 0.18369373807058945, 0.18369373807058945, -0.18369373807058945,
        -0.18369373807058945},
       {0.10489923409906508, 0.09650033150343518, -0.20489923409738703, 0.3034996685080671, 0.0,
        0.0, 0.0, 0.0, 0.19475053587569846, 0.10349964275069287, 0.3052494641053727,
        -0.2034996427591196}},
  };
  for (const Case& c : cases) {
    INFO("causal ", c.causal);
    Tensor out = empty({2, 1, 3, 2}, DType::Float64), lse = empty({2, 1, 3}, DType::Float64);
    kernels().attention(att_q(), att_k(), att_v(), att_keep(), c.causal, 0.7, out, lse);
    Tensor dq = empty({2, 1, 3, 2}, DType::Float64), dk = empty({2, 1, 3, 2}, DType::Float64);
    Tensor dv = empty({2, 1, 3, 2}, DType::Float64);
    kernels().attention_backward(go, att_q(), att_k(), att_v(), out, lse, att_keep(), c.causal, 0.7,
                             dq, dk, dv);
    check_close(dq, c.dq, 1e-8);
    check_close(dk, c.dk, 1e-8);
    check_close(dv, c.dv, 1e-8);
  }
}

TEST_CASE("attention over many heads runs threaded and agrees with one head at a time") {
  // 8 (b, h) pairs, each a copy of batch 0 of the reference with head-specific scaling
  const int64_t heads = 8, len = 3, dim = 2;
  std::vector<double> q(heads * len * dim), k(q.size()), v(q.size());
  const auto q0 = values(att_q()), k0 = values(att_k()), v0 = values(att_v());
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t e = 0; e < len * dim; ++e) {
      q[h * len * dim + e] = q0[e] * (1 + 0.1 * h);
      k[h * len * dim + e] = k0[e];
      v[h * len * dim + e] = v0[e];
    }
  Tensor out = empty({1, heads, len, dim}, DType::Float64), lse = empty({1, heads, len}, DType::Float64);
  kernels().attention(f64(q, {1, heads, len, dim}), f64(k, {1, heads, len, dim}),
                  f64(v, {1, heads, len, dim}), Tensor(), false, 0.7, out, lse);
  for (int64_t h = 0; h < heads; ++h) {
    // head h equals batch 0 of the reference with scale 0.7 (1 + 0.1 h)
    Tensor o1 = empty({1, 1, len, dim}, DType::Float64), l1 = empty({1, 1, len}, DType::Float64);
    kernels().attention(make_view(att_q(), {1, 1, len, dim}, {6, 6, 2, 1}, 0),
                    make_view(att_k(), {1, 1, len, dim}, {6, 6, 2, 1}, 0),
                    make_view(att_v(), {1, 1, len, dim}, {6, 6, 2, 1}, 0), Tensor(), false,
                    0.7 * (1 + 0.1 * h), o1, l1);
    const auto all = values(out);
    check_close(std::vector<double>(all.begin() + h * len * dim, all.begin() + (h + 1) * len * dim),
                values(o1), 1e-14);
  }
}

// A naive float64 reference of attention's formulas for [B, H, L, D] heads (queries =
// keys = L), key_keep [B, L] as 0/1, forward and backward of sum(go * out).
struct AttentionReference {
  std::vector<double> out, dq, dk, dv;
};
AttentionReference naive_attention(int64_t B, int64_t H, int64_t L, int64_t D, const std::vector<double>& q,
                                   const std::vector<double>& k, const std::vector<double>& v,
                                   const std::vector<double>& go, const std::vector<double>& keep, bool causal,
                                   double scale) {
  const int64_t n = B * H * L * D;
  AttentionReference r{std::vector<double>(n), std::vector<double>(n, 0.0), std::vector<double>(n, 0.0),
                       std::vector<double>(n, 0.0)};
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t at = (b * H + h) * L * D;
      std::vector<double> p(L * L, 0.0), ds(L * L, 0.0);
      for (int64_t i = 0; i < L; ++i) {
        double top = -1e300, total = 0.0;
        auto visible = [&](int64_t j) { return keep[b * L + j] != 0.0 && (!causal || j <= i); };
        auto score = [&](int64_t j) {
          double dot = 0.0;
          for (int64_t t = 0; t < D; ++t) dot += q[at + i * D + t] * k[at + j * D + t];
          return scale * dot;
        };
        for (int64_t j = 0; j < L; ++j) if (visible(j)) top = std::max(top, score(j));
        for (int64_t j = 0; j < L; ++j) if (visible(j)) total += (p[i * L + j] = std::exp(score(j) - top));
        for (int64_t j = 0; j < L; ++j) p[i * L + j] /= total;
        for (int64_t t = 0; t < D; ++t) {
          double o = 0.0;
          for (int64_t j = 0; j < L; ++j) o += p[i * L + j] * v[at + j * D + t];
          r.out[at + i * D + t] = o;
        }
      }
      for (int64_t i = 0; i < L; ++i) {
        double row = 0.0;  // D_i = sum_j P_ij dP_ij
        std::vector<double> dp(L);
        for (int64_t j = 0; j < L; ++j) {
          for (int64_t t = 0; t < D; ++t) dp[j] += go[at + i * D + t] * v[at + j * D + t];
          row += p[i * L + j] * dp[j];
        }
        for (int64_t j = 0; j < L; ++j) ds[i * L + j] = p[i * L + j] * (dp[j] - row);
      }
      for (int64_t i = 0; i < L; ++i)
        for (int64_t j = 0; j < L; ++j)
          for (int64_t t = 0; t < D; ++t) {
            r.dv[at + j * D + t] += p[i * L + j] * go[at + i * D + t];
            r.dq[at + i * D + t] += scale * ds[i * L + j] * k[at + j * D + t];
            r.dk[at + j * D + t] += scale * ds[i * L + j] * q[at + i * D + t];
          }
    }
  return r;
}

// tensor/cpu/attention.cpp (per-head GEMMs on the SIMD build, softmax in T) against a
// naive float64 reference of the formulas, with key padding and causal masking, forward
// and backward, at a tiny head (L = 5, D = 3) and a ViT-like one (L = 40, D = 24).
TEST_CASE("attention matches a naive reference at tiny and ViT-like head sizes") {
  struct Shape4 {
    int64_t batch, heads, len, dim;
  };
  for (const Shape4 sh : {Shape4{2, 3, 5, 3}, Shape4{2, 2, 40, 24}}) {
    for (const bool causal : {false, true}) {
      INFO("L = ", sh.len, ", D = ", sh.dim, ", causal ", causal);
      const int64_t B = sh.batch, H = sh.heads, L = sh.len, D = sh.dim, n = B * H * L * D;
      const auto q = ramp(n, 0.9, 0.1), k = ramp(n, 0.7, 0.4), v = ramp(n, 1.1, 0.8), go = ramp(n, 0.5, 0.3);
      std::vector<double> keep(B * L, 1.0);
      keep[L - 1] = 0.0;  // batch 0 hides its last key (and, causal, row 0 still sees key 0)
      keep[L + 1] = 0.0;  // batch 1 hides its second
      const double scale = 0.37;
      const AttentionReference want = naive_attention(B, H, L, D, q, k, v, go, keep, causal, scale);
      const std::vector<double>& out = want.out;
      const std::vector<double>&dq = want.dq, &dk = want.dk, &dv = want.dv;
      const Shape shape{B, H, L, D};
      Tensor keep_t = f64(keep, {B, L}).to(DType::UInt8);
      Tensor o = empty(shape, DType::Float64), lse = empty({B, H, L}, DType::Float64);
      kernels().attention(f64(q, shape), f64(k, shape), f64(v, shape), keep_t, causal, scale, o, lse);
      check_close(o, out, 1e-12);
      Tensor gq = empty(shape, DType::Float64), gk = empty(shape, DType::Float64), gv = empty(shape, DType::Float64);
      kernels().attention_backward(f64(go, shape), f64(q, shape), f64(k, shape), f64(v, shape), o, lse, keep_t,
                                   causal, scale, gq, gk, gv);
      check_close(gq, dq, 1e-12);
      check_close(gk, dk, 1e-12);
      check_close(gv, dv, 1e-12);
      // float32 through the same path: within float32 rounding of the reference
      Tensor o32 = empty(shape, DType::Float32), lse32 = empty({B, H, L}, DType::Float32);
      kernels().attention(f64(q, shape).to(DType::Float32), f64(k, shape).to(DType::Float32),
                          f64(v, shape).to(DType::Float32), keep_t, causal, scale, o32, lse32);
      check_close(values(o32), out, 2e-5);
    }
  }
}

namespace {
// Whether CpuBackend::attention runs attention_avx512.cpp's heads here.
bool avx512_attention_runs_here() {
  return runs_here(cpu::attention_avx512::compiled() && std::string(cpu::gemm::isa_in_use()) == "avx512",
                   "this CPU or build runs attention through Eigen's GEMMs");
}
}  // namespace

// attention_avx512.cpp's heads (float32, head_dim a multiple of 16; the GEMM path above
// takes the rest) against the float64 reference, forward and backward, at the default
// fine-tune's sizes (L = 17-20, D = 16), CLIP's (L = 77, D = 64), one key, and key counts
// that leave 1 or 15 lanes of the last 16 in use; and through strided head views, where
// the numbers must not change at all.
TEST_CASE("attention's AVX-512 heads match the float64 reference and read views in place") {
  if (!avx512_attention_runs_here()) return;
  struct Shape4 {
    int64_t batch, heads, len, dim;
  };
  for (const Shape4 sh : {Shape4{2, 2, 20, 16}, Shape4{2, 1, 17, 32}, Shape4{1, 2, 77, 64}, Shape4{1, 1, 1, 16},
                          Shape4{2, 3, 33, 16}, Shape4{1, 1, 31, 48}}) {
    for (const bool causal : {false, true}) {
      INFO("L = ", sh.len, ", D = ", sh.dim, ", causal ", causal);
      const int64_t B = sh.batch, H = sh.heads, L = sh.len, D = sh.dim, n = B * H * L * D;
      const auto q = ramp(n, 0.9, 0.1), k = ramp(n, 0.7, 0.4), v = ramp(n, 1.1, 0.8), go = ramp(n, 0.5, 0.3);
      std::vector<double> keep(B * L, 1.0);
      if (L > 2) keep[L - 1] = 0.0;          // batch 0 hides its last key
      if (B > 1) keep[L + 1] = 0.0;          // batch 1 hides its second: causal, its row 1 sees key 0 only
      const double scale = 0.37;
      const AttentionReference want = naive_attention(B, H, L, D, q, k, v, go, keep, causal, scale);
      const Shape shape{B, H, L, D};
      const Tensor keep_t = f64(keep, {B, L}).to(DType::UInt8);
      auto f32_of = [&](const std::vector<double>& x) { return f64(x, shape).to(DType::Float32); };
      Tensor o = empty(shape), lse = empty({B, H, L});
      kernels().attention(f32_of(q), f32_of(k), f32_of(v), keep_t, causal, scale, o, lse);
      Tensor gq = empty(shape), gk = empty(shape), gv = empty(shape);
      kernels().attention_backward(f32_of(go), f32_of(q), f32_of(k), f32_of(v), o, lse, keep_t, causal, scale, gq,
                                   gk, gv);
      // float32 inputs and products: measured at most 2.0e-7 (out) and 5.5e-7 (the
      // gradients) relative to max(1, |value|) over these cases; bounds ~5x that.
      check_close(o, want.out, 1e-6);
      check_close(gq, want.dq, 2e-6);
      check_close(gk, want.dk, 2e-6);
      check_close(gv, want.dv, 2e-6);

      // The same heads as views into a packed [B, L, 3, H, D] projection, the output and
      // gradients written through heads-last views: bit for bit the same numbers.
      Tensor packed = empty({B, L, 3, H, D});
      auto head_view = [&](const Tensor& five, int64_t which) { return ops::transpose(ops::select(five, 2, which), 1, 2); };
      for (int64_t which = 0; which < 3; ++which) {
        Tensor view = head_view(packed, which);
        kernels().copy(f32_of(which == 0 ? q : which == 1 ? k : v), view);
      }
      auto heads_last = [&]() { return ops::transpose(empty({B, L, H, D}), 1, 2); };
      Tensor o_view = heads_last(), gq_view = heads_last(), gk_view = heads_last(), gv_view = heads_last();
      Tensor lse_view = empty({B, H, L});
      kernels().attention(head_view(packed, 0), head_view(packed, 1), head_view(packed, 2), keep_t, causal, scale,
                          o_view, lse_view);
      kernels().attention_backward(f32_of(go), head_view(packed, 0), head_view(packed, 1), head_view(packed, 2),
                                   o_view, lse_view, keep_t, causal, scale, gq_view, gk_view, gv_view);
      CHECK(values(o_view.contiguous()) == values(o));
      CHECK(values(lse_view) == values(lse));
      CHECK(values(gq_view.contiguous()) == values(gq));
      CHECK(values(gk_view.contiguous()) == values(gk));
      CHECK(values(gv_view.contiguous()) == values(gv));
    }
  }
}

// The same kernels against the float64 path (Eigen's GEMMs, checked against the naive
// reference above to 1e-12) where the naive reference does not reach: fewer queries than
// keys and more, lse, and query rows that see no key at all (out 0, lse -inf, no
// gradient); and a NaN score, which makes every row that sees it NaN, as on that path.
TEST_CASE("attention's AVX-512 heads agree with the float64 path on lse, empty rows, Lq != Lk and NaN") {
  if (!avx512_attention_runs_here()) return;
  const int64_t B = 2, H = 2, D = 32;
  for (const auto [lq, lk] : {std::pair<int64_t, int64_t>{5, 21}, {21, 5}, {18, 18}}) {
    for (const bool causal : {false, true}) {
      INFO("Lq = ", lq, ", Lk = ", lk, ", causal ", causal);
      const Tensor q = f64(ramp(B * H * lq * D, 0.9, 0.1), {B, H, lq, D});
      const Tensor k = f64(ramp(B * H * lk * D, 0.7, 0.4), {B, H, lk, D});
      const Tensor v = f64(ramp(B * H * lk * D, 1.1, 0.8), {B, H, lk, D});
      const Tensor go = f64(ramp(B * H * lq * D, 0.5, 0.3), {B, H, lq, D});
      std::vector<uint8_t> keep(B * lk, 1);
      keep[lk + 0] = 0;  // batch 1 hides key 0: causal, its query 0 sees nothing
      keep[lk - 1] = 0;
      const Tensor keep_t = from_vector<uint8_t>(keep, {B, lk});
      auto run = [&](DType dtype) {
        Tensor o = empty(q.shape(), dtype), lse = empty({B, H, lq}, dtype);
        kernels().attention(q.to(dtype), k.to(dtype), v.to(dtype), keep_t, causal, 0.37, o, lse);
        Tensor gq = empty(q.shape(), dtype), gk = empty(k.shape(), dtype), gv = empty(v.shape(), dtype);
        kernels().attention_backward(go.to(dtype), q.to(dtype), k.to(dtype), v.to(dtype), o, lse, keep_t, causal, 0.37,
                                     gq, gk, gv);
        return std::vector<Tensor>{o, lse, gq, gk, gv};
      };
      const std::vector<Tensor> wide = run(DType::Float64), ours = run(DType::Float32);
      const char* names[] = {"out", "lse", "grad_q", "grad_k", "grad_v"};
      for (size_t i = 0; i < wide.size(); ++i) {
        INFO(names[i]);
        check_close(ours[i], values(wide[i]), 2e-6);
      }
      if (causal) {  // batch 1's query 0 (every head): no visible key
        for (int64_t h = 0; h < H; ++h) {
          CHECK(values(ours[1])[(H + h) * lq] == -kInf);
          for (int64_t d = 0; d < D; ++d) CHECK(values(ours[0])[((H + h) * lq) * D + d] == 0.0);
        }
      }
    }
  }
  // A NaN in key 3 of batch 0, head 0, causal: queries 0-2 do not see it and stay
  // finite, queries 3 and later see it and are all NaN, as in float64; the other heads
  // and batch 1 stay finite.
  const int64_t L = 9;
  std::vector<double> kv = ramp(B * H * L * D, 0.7, 0.4);
  kv[3 * D + 5] = kNaN;
  const Tensor qn = f64(ramp(B * H * L * D, 0.9, 0.1), {B, H, L, D}), kn = f64(kv, {B, H, L, D});
  const Tensor vn = f64(ramp(B * H * L * D, 1.1, 0.8), {B, H, L, D});
  for (const DType dtype : {DType::Float64, DType::Float32}) {
    INFO(dtype_name(dtype));
    Tensor o = empty({B, H, L, D}, dtype), lse = empty({B, H, L}, dtype);
    kernels().attention(qn.to(dtype), kn.to(dtype), vn.to(dtype), Tensor(), true, 0.37, o, lse);
    const std::vector<double> out = values(o);
    auto nan = [](double x) { return std::isnan(x); };
    CHECK(std::none_of(out.begin(), out.begin() + 3 * D, nan));
    CHECK(std::all_of(out.begin() + 3 * D, out.begin() + L * D, nan));
    CHECK(std::none_of(out.begin() + L * D, out.end(), nan));
  }
}

// The heads of a packed projection ([B, L, 3, H, D] memory, as one q/k/v linear writes
// it) are read where they lie, and the output and gradients written through the strides
// of heads-last views (what tensor/ops/attention.cpp hands the CPU kernel, so that
// attention needs no gather or scatter): the same numbers as on contiguous copies.
TEST_CASE("attention reads head views in place and writes through strided outputs") {
  const int64_t B = 2, H = 3, L = 7, D = 4;
  const Shape heads{B, H, L, D};
  const Tensor packed = f64(ramp(B * L * 3 * H * D, 0.9, 0.1), {B, L, 3, H, D});
  const Tensor packed_go = f64(ramp(B * L * H * D, 0.5, 0.3), {B, L, H, D});
  auto head_view = [&](const Tensor& five, int64_t which) { return ops::transpose(ops::select(five, 2, which), 1, 2); };
  auto heads_last = [&](const Tensor& memory) { return ops::transpose(memory, 1, 2); };  // [B, L, H, D] -> [B, H, L, D]
  const Tensor q = head_view(packed, 0), k = head_view(packed, 1), v = head_view(packed, 2);
  const Tensor go = heads_last(packed_go);
  REQUIRE_FALSE(q.is_contiguous());
  Tensor keep = from_vector<uint8_t>({1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 1, 1, 1, 1}, {B, L});
  for (const bool causal : {false, true}) {
    INFO("causal ", causal);
    const double scale = 0.41;
    // reference: contiguous copies in, contiguous out
    Tensor out_c = empty(heads, DType::Float64), lse_c = empty({B, H, L}, DType::Float64);
    kernels().attention(q.contiguous(), k.contiguous(), v.contiguous(), keep, causal, scale, out_c, lse_c);
    Tensor gq_c = empty(heads, DType::Float64), gk_c = empty(heads, DType::Float64), gv_c = empty(heads, DType::Float64);
    kernels().attention_backward(go.contiguous(), q.contiguous(), k.contiguous(), v.contiguous(), out_c, lse_c, keep,
                                 causal, scale, gq_c, gk_c, gv_c);
    // views in, heads-last output, gradients into views of one packed gradient
    Tensor out_v = heads_last(empty({B, L, H, D}, DType::Float64)), lse_v = empty({B, H, L}, DType::Float64);
    kernels().attention(q, k, v, keep, causal, scale, out_v, lse_v);
    check_close(out_v.contiguous(), values(out_c), 1e-14);
    check_close(lse_v, values(lse_c), 1e-14);
    Tensor grad = full({B, L, 3, H, D}, kNaN, DType::Float64);  // every element must be written
    Tensor gq = head_view(grad, 0), gk = head_view(grad, 1), gv = head_view(grad, 2);
    kernels().attention_backward(go, q, k, v, out_v, lse_v, keep, causal, scale, gq, gk, gv);
    check_close(gq.contiguous(), values(gq_c), 1e-14);
    check_close(gk.contiguous(), values(gk_c), 1e-14);
    check_close(gv.contiguous(), values(gv_c), 1e-14);
  }
  // a view whose head_dim is strided is refused, by name (ops::attention copies it first)
  const Tensor strided_d = make_view(packed, heads, {L * 3 * H * D, D, 3 * H * D, 2}, 0);
  Tensor out = empty(heads, DType::Float64), lse = empty({B, H, L}, DType::Float64);
  const std::string msg = error_of([&] { kernels().attention(strided_d, k, v, keep, false, 1.0, out, lse); });
  CHECK(msg.find("attention: q [2, 3, 7, 4] with strides") != std::string::npos);
  CHECK(msg.find("must have a contiguous last dim") != std::string::npos);
}

// ---- ListMLE -------------------------------------------------------------------------

TEST_CASE("listmle matches the closed-form vectors") {
  // three lists padded to K = 4; expected values from 30-digit mpmath
  Tensor scores = f64({0.6, 0.8, 0, 0,  //
                       0.5, 0.8, 0.4, 0,  //
                       50, -40, 3, 3},
                      {3, 4});
  Tensor order = i64({0, 1, 0, 0, /**/ 1, 0, 2, 0, /**/ 0, 1, 2, 3}, {3, 4});
  Tensor lengths = i64({2, 3, 4}, {3});
  for (DType dtype : {DType::Float64, DType::Float32}) {
    INFO("dtype ", dtype_name(dtype));
    const double tol = dtype == DType::Float64 ? 1e-14 : 1e-6;
    Tensor loss = empty({3}, dtype), grad = full({3, 4}, 99.0, dtype);
    kernels().listmle(scores.to(dtype), order, lengths, loss, grad);
    check_close(loss, {0.798138869381591876, 1.52449560591417648, 44.3862943611198906}, tol);
    check_close(grad, {-0.549833997312477925, 0.549833997312477925, 0, 0,  //
                       -0.167772476368897167, -0.585258127331930468, 0.753030603700827635, 0,  //
                       -7.7479952584976331e-21, -1.0, -4.9004278311047053e-20, 1.0},
                tol);
  }
}

TEST_CASE("listmle: partial lists, single items, and bad orders") {
  // K = 4 but only 3 valid items, in the order [2, 0, 3]; item 1 is padding
  Tensor scores = f64({1.0, 2.0, 0.5, -1.0, /**/ 7.0, 8.0, 9.0, 1.0}, {2, 4});
  Tensor order = i64({2, 0, 3, 1, /**/ 1, 0, 0, 0}, {2, 4});
  Tensor lengths = i64({3, 1}, {2});
  Tensor loss = empty({2}, DType::Float64), grad = empty({2, 4}, DType::Float64);
  kernels().listmle(scores, order, lengths, loss, grad);
  check_close(loss, {1.18188493068496314, 0.0}, 1e-14);
  check_close(grad, {0.454894070945577004, 0.0, -0.651792572116265148, 0.196898501170688144,  //
                     0, 0, 0, 0},
              1e-14);

  Tensor dup = i64({2, 2, 3, 1, 1, 0, 0, 0}, {2, 4});
  const std::string msg = error_of([&] { kernels().listmle(scores, dup, lengths, loss, grad); });
  CHECK(msg.find("listmle: list 0 names item 2 twice") != std::string::npos);
  Tensor too_long = i64({5, 1}, {2});
  CHECK(error_of([&] { kernels().listmle(scores, order, too_long, loss, grad); })
            .find("length 5") != std::string::npos);
}

// ---- AdamW ---------------------------------------------------------------------------

TEST_CASE("adamw two steps by hand, and sum_of_squares") {
  Tensor p = f64({1.0, -2.0}, {2}), g = f64({0.5, 0.0}, {2});
  Tensor m = zeros({2}, DType::Float64), v = zeros({2}, DType::Float64);
  std::vector<Backend::AdamWTensor> group{{p, g, m, v, 0.01}};
  // step 1: m = 0.05, v = 0.00025, m^ = 0.5, v^ = 0.25:
  //   p = 1 - 0.1 * 0.5 / (0.5 + 1e-8) - 0.1 * 0.01 * 1
  kernels().adamw(group, 0.1, 0.9, 0.999, 1e-8, 1);
  check_close(p, {0.8990000019999999, -2.0 + 0.1 * 0.01 * 2.0}, 1e-15);
  // step 2 with g = -0.25
  g.data<double>()[0] = -0.25;
  kernels().adamw(group, 0.1, 0.9, 0.999, 1e-8, 2);
  check_close(m, {0.02, 0.0}, 1e-15);
  check_close(v, {0.00031225, 0.0}, 1e-15);
  CHECK(values(p)[0] == doctest::Approx(0.8714672987058462).epsilon(1e-14));

  Tensor a = f32({1, 2, 3}, {3}), b = f64({0.5, -0.5}, {2});
  CHECK(kernels().sum_of_squares({a, b}) == 14.5);
  std::vector<float> many(100000, 0.5f);
  CHECK(kernels().sum_of_squares({f32(many, {100000})}) == 25000.0);
}

// tensor/cpu/parallel.h: the help-first pool behind the kernels' threading.
TEST_CASE("cpu parallel_parts: every part runs once, nested calls run serially, results do not depend on timing") {
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2, 4}) {
    omp_set_num_threads(threads);
    for (int64_t parts : {1, 2, 3, 17, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(parts));
      for (auto& h : hits) h = 0;
      std::atomic<int> nested_parallel{0};
      mms::cpu::parallel_parts(parts, [&](int64_t p) {
        hits[static_cast<size_t>(p)]++;
        if (mms::cpu::parallel_threads() != 1) nested_parallel++;
        mms::cpu::parallel_parts(3, [&](int64_t) {});  // nested: serial, must not deadlock
      });
      for (auto& h : hits) CHECK(h.load() == 1);
      if (parts > 1) CHECK(nested_parallel.load() == 0);  // one part is just a call: nesting may thread
    }
    // Many back-to-back jobs (the pattern of a training step), each a per-part reduction.
    std::vector<double> data(100000);
    for (size_t i = 0; i < data.size(); ++i) data[i] = std::sin(static_cast<double>(i));
    double first = 0;
    for (int round = 0; round < 300; ++round) {
      const int64_t parts = mms::cpu::parallel_threads();
      std::vector<double> partial(static_cast<size_t>(parts), 0.0);
      mms::cpu::parallel_ranges(static_cast<int64_t>(data.size()), parts, [&](int64_t b, int64_t e) {
        double s = 0;
        for (int64_t i = b; i < e; ++i) s += data[static_cast<size_t>(i)];
        partial[static_cast<size_t>(b * parts / static_cast<int64_t>(data.size()))] = s;
      });
      double sum = 0;
      for (double p : partial) sum += p;
      if (round == 0) first = sum;
      CHECK(sum == first);  // bit for bit: the cut depends only on n and the thread count
    }
  }
  omp_set_num_threads(saved);
}

// The row kernels that moved from OpenMP regions to the pool (parallel_rows): with 3
// threads they write every row, bit for bit as on one (rows are independent). Sizes are
// above the threading threshold (kParallelGrain elements); outputs start as NaN so an
// unwritten row fails.
TEST_CASE("cpu row kernels on the pool: threaded results equal single-threaded ones bit for bit") {
  const int saved = omp_get_max_threads();
  const auto nan_filled = [](const Shape& shape) { return full(shape, kNaN); };
  const Tensor x = randn({600, 77}, 11);            // 46k elements
  const Tensor table = randn({300, 128}, 12);       // embedding-like table
  std::vector<int64_t> picks_rows(900), picks_cols(600 * 60), order(2000 * 24), lengths(2000);
  for (size_t i = 0; i < picks_rows.size(); ++i) picks_rows[i] = int64_t((i * 7919) % 300);  // repeats
  for (size_t i = 0; i < picks_cols.size(); ++i) picks_cols[i] = int64_t((i * 31) % 77);
  for (size_t b = 0; b < lengths.size(); ++b) {
    lengths[b] = int64_t(b % 25);  // 0..24 kept items, some lists too short to rank
    for (int64_t k = 0; k < 24; ++k) order[b * 24 + k] = (k * 5 + int64_t(b)) % 24;
  }
  const Tensor rows_index = i64(picks_rows, {900}), cols_index = i64(picks_cols, {600, 60});
  const Tensor grad_rows = randn({900, 128}, 13), grad_cols = randn({600, 60}, 14);
  const Tensor scores = randn({2000, 24}, 15), ranks = i64(order, {2000, 24}), kept = i64(lengths, {2000});
  const Tensor att_scores = randn({4, 3, 40, 77}, 16);
  std::vector<uint8_t> keep(4 * 77);
  for (size_t i = 0; i < keep.size(); ++i) keep[i] = (i % 77) < 20 + 10 * (i / 77);
  const Tensor key_keep = from_vector<uint8_t>(keep, {4, 77});

  const auto run_all = [&] {
    Tensor sm = nan_filled(x.shape()), lsm = nan_filled(x.shape()), back = nan_filled(x.shape()),
           sums = nan_filled({600});
    kernels().softmax_last(x, sm, false);
    kernels().softmax_last(x, lsm, true);
    kernels().softmax_last_backward(x, sm, back, false);
    kernels().reduce_last(ReduceOp::LogSumExp, x, sums);
    Tensor selected = nan_filled({900, 128});
    kernels().index_select_rows(table, rows_index, selected);
    Tensor table_grad = zeros({300, 128});
    kernels().index_add_rows(grad_rows, rows_index, table_grad);
    Tensor gathered = nan_filled({600, 60});
    kernels().gather_last(x, cols_index, gathered);
    Tensor scattered = zeros({600, 77});
    kernels().scatter_add_last(grad_cols, cols_index, scattered);
    Tensor loss = nan_filled({2000}), grad = nan_filled(scores.shape());
    kernels().listmle(scores, ranks, kept, loss, grad);
    Tensor probs = nan_filled(att_scores.shape()), lse = nan_filled({4, 3, 40});
    kernels().attention_softmax(att_scores, key_keep, true, probs, lse);
    Tensor column_sums = nan_filled({128});
    kernels().sum_rows(grad_rows, column_sums);
    return std::vector<Tensor>{sm, lsm, back, sums, selected, table_grad, gathered, scattered, loss, grad, probs, lse,
                               column_sums};
  };
  const char* names[] = {"softmax", "log_softmax", "softmax_backward", "logsumexp", "index_select_rows",
                         "index_add_rows", "gather_last", "scatter_add_last", "listmle loss", "listmle grad",
                         "attention_softmax probs", "attention_softmax lse", "sum_rows"};
  omp_set_num_threads(1);
  const std::vector<Tensor> serial = run_all();
  omp_set_num_threads(3);
  REQUIRE(mms::cpu::parallel_threads() == 3);
  const std::vector<Tensor> threaded = run_all();
  omp_set_num_threads(saved);
  for (size_t i = 0; i < serial.size(); ++i) {
    INFO(names[i]);
    const std::vector<double> want = values(serial[i]);
    CHECK(std::none_of(want.begin(), want.end(), [](double v) { return std::isnan(v); }));
    CHECK(std::memcmp(serial[i].raw_data(), threaded[i].raw_data(), serial[i].numel() * serial[i].element_size()) == 0);
  }
}
