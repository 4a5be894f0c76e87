// Elementwise kernels: unary ops and their derivatives, binary ops, where.
//
// Every op is a small lambda handed to one of the map_* helpers, which walk the
// operands with strided_for (tensor/cpu/strided.h) and take a vectorisable loop when
// the run is contiguous in every operand. The op switch sits outside the loop, so each
// op compiles to its own tight loop.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "tensor/cpu/activation_kernel.h"
#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/strided.h"

namespace mms::cpu {

namespace {

// out = f(x); a run that is contiguous in both operands goes to contiguous(in, out, n)
// (map_unary: a loop of f; an op with an explicitly vectorised kernel passes that).
template <typename T, typename U, typename F, typename Contiguous>
void map_unary_runs(const Tensor& x, Tensor& out, F f, Contiguous contiguous) {
  const T* in = static_cast<const T*>(x.raw_data());
  U* res = static_cast<U*>(out.raw_data());
  strided_for<2>(out.shape(), {&x.strides(), &out.strides()},
                 [&](const auto& off, const auto& st, int64_t n) {
                   const T* i = in + off[0];
                   U* o = res + off[1];
                   if (st[0] == 1 && st[1] == 1) {
                     contiguous(i, o, n);
                   } else {
                     for (int64_t j = 0; j < n; ++j) o[j * st[1]] = f(i[j * st[0]]);
                   }
                 });
}
template <typename T, typename U, typename F>
void map_unary(const Tensor& x, Tensor& out, F f) {
  map_unary_runs<T, U>(x, out, f, [&](const T* i, U* o, int64_t n) {
    for (int64_t j = 0; j < n; ++j) o[j] = f(i[j]);
  });
}

// out = f(a, b); as map_unary_runs, a run contiguous in all three goes to contiguous.
template <typename A, typename B, typename U, typename F, typename Contiguous>
void map_binary_runs(const Tensor& a, const Tensor& b, Tensor& out, F f, Contiguous contiguous) {
  const A* pa = static_cast<const A*>(a.raw_data());
  const B* pb = static_cast<const B*>(b.raw_data());
  U* res = static_cast<U*>(out.raw_data());
  strided_for<3>(out.shape(), {&a.strides(), &b.strides(), &out.strides()},
                 [&](const auto& off, const auto& st, int64_t n) {
                   const A* x = pa + off[0];
                   const B* y = pb + off[1];
                   U* o = res + off[2];
                   if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
                     contiguous(x, y, o, n);
                   } else if (st[0] == 1 && st[1] == 0 && st[2] == 1) {  // tensor op scalar
                     const B s = y[0];
                     for (int64_t j = 0; j < n; ++j) o[j] = f(x[j], s);
                   } else {
                     for (int64_t j = 0; j < n; ++j) o[j * st[2]] = f(x[j * st[0]], y[j * st[1]]);
                   }
                 });
}
template <typename A, typename B, typename U, typename F>
void map_binary(const Tensor& a, const Tensor& b, Tensor& out, F f) {
  map_binary_runs<A, B, U>(a, b, out, f, [&](const A* x, const B* y, U* o, int64_t n) {
    for (int64_t j = 0; j < n; ++j) o[j] = f(x[j], y[j]);
  });
}

// The widest quick_gelu kernels (activation_kernel.h) compiled in that the CPU runs:
// AVX-512, else AVX2+FMA, else none (the scalar loop). MMS_CPU_ACTIVATION=scalar forces
// the scalar loop and =avx2 caps the width (to compare them); the two SIMD builds give
// the same bits.
struct QuickGeluKernels {
  void (*forward)(const float*, float*, int64_t) = nullptr;
  void (*backward)(const float*, const float*, float*, int64_t) = nullptr;
};
const QuickGeluKernels& vector_quick_gelu() {
  static const QuickGeluKernels kernels = [] {
    const char* cap = std::getenv("MMS_CPU_ACTIVATION");
    const bool scalar = cap && std::strcmp(cap, "scalar") == 0;
    const bool at_most_avx2 = cap && std::strcmp(cap, "avx2") == 0;
    if (!scalar && !at_most_avx2 && activation::avx512::compiled() && cpu_has_avx512()) {
      return QuickGeluKernels{activation::avx512::quick_gelu, activation::avx512::quick_gelu_backward};
    }
    if (!scalar && activation::avx2::compiled() && cpu_has_avx2_fma()) {
      return QuickGeluKernels{activation::avx2::quick_gelu, activation::avx2::quick_gelu_backward};
    }
    return QuickGeluKernels{};
  }();
  return kernels;
}

// sigmoid without overflow: exp is only ever taken of a non-positive number
template <typename T>
inline T stable_sigmoid(T x) {
  if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
  const T e = std::exp(x);
  return e / (T(1) + e);
}

template <typename T>
inline T sign_of(T x) {
  return static_cast<T>((x > T(0)) - (x < T(0)));
}

template <typename T>
constexpr T kSqrtHalf = T(0.70710678118654752440084436210485);     // 1/sqrt(2)
template <typename T>
constexpr T kInvSqrt2Pi = T(0.39894228040143267793994605993438);   // 1/sqrt(2 pi)
template <typename T>
constexpr T kSqrt2OverPi = T(0.79788456080286535587989211986876);  // sqrt(2/pi)
template <typename T>
constexpr T kGeluCubic = T(0.044715);
template <typename T>
constexpr T kQuickGelu = T(1.702);

template <typename T>
void unary_typed(UnaryOp op, const Tensor& x, Tensor& out, T alpha, T beta) {
  auto run = [&](auto f) { map_unary<T, T>(x, out, f); };
  switch (op) {
    case UnaryOp::Neg: return run([](T v) { return -v; });
    case UnaryOp::Exp: return run([](T v) { return std::exp(v); });
    case UnaryOp::Log: return run([](T v) { return std::log(v); });
    case UnaryOp::Log1p: return run([](T v) { return std::log1p(v); });
    case UnaryOp::Sqrt: return run([](T v) { return std::sqrt(v); });
    case UnaryOp::Rsqrt: return run([](T v) { return T(1) / std::sqrt(v); });
    case UnaryOp::Abs: return run([](T v) { return std::abs(v); });
    case UnaryOp::Sign: return run([](T v) { return v != v ? v : sign_of(v); });
    case UnaryOp::Reciprocal: return run([](T v) { return T(1) / v; });
    case UnaryOp::Square: return run([](T v) { return v * v; });
    case UnaryOp::Tanh: return run([](T v) { return std::tanh(v); });
    case UnaryOp::Sigmoid: return run([](T v) { return stable_sigmoid(v); });
    // `v < 0 ? 0 : v` lets NaN through, as PyTorch's relu does
    case UnaryOp::Relu: return run([](T v) { return v < T(0) ? T(0) : v; });
    case UnaryOp::GeluErf:
      return run([](T v) { return T(0.5) * v * (T(1) + std::erf(v * kSqrtHalf<T>)); });
    case UnaryOp::GeluTanh:
      return run([](T v) {
        return T(0.5) * v * (T(1) + std::tanh(kSqrt2OverPi<T> * (v + kGeluCubic<T> * v * v * v)));
      });
    case UnaryOp::QuickGelu: {
      const auto f = [](T v) { return v * stable_sigmoid(kQuickGelu<T> * v); };
      if constexpr (std::is_same_v<T, float>) {
        if (const auto kernel = vector_quick_gelu().forward) return map_unary_runs<T, T>(x, out, f, kernel);
      }
      return run(f);
    }
    case UnaryOp::AddScalar: return run([=](T v) { return v + alpha; });
    case UnaryOp::MulScalar: return run([=](T v) { return v * alpha; });
    case UnaryOp::PowScalar:
      if (alpha == T(2)) return run([](T v) { return v * v; });
      return run([=](T v) { return std::pow(v, alpha); });
    case UnaryOp::RSubScalar: return run([=](T v) { return alpha - v; });
    case UnaryOp::RDivScalar: return run([=](T v) { return alpha / v; });
    // x first in std::max/min so a NaN x propagates (std::max returns its first
    // argument unless the second compares greater)
    case UnaryOp::Clamp: return run([=](T v) { return std::min(std::max(v, alpha), beta); });
  }
  fail("unary: unknown op ", static_cast<int>(op));
}

// grad_in = grad_out * d op(x) / dx, the formulas written as in PyTorch's derivatives.yaml.
template <typename T>
void unary_backward_typed(UnaryOp op, const Tensor& g, const Tensor& x, Tensor& grad_in, T alpha,
                          T beta) {
  auto run = [&](auto f) { map_binary<T, T, T>(g, x, grad_in, f); };
  switch (op) {
    // neg: -grad
    case UnaryOp::Neg: return run([](T dy, T) { return -dy; });
    // exp: grad * exp(x)
    case UnaryOp::Exp: return run([](T dy, T v) { return dy * std::exp(v); });
    // log: grad / x
    case UnaryOp::Log: return run([](T dy, T v) { return dy / v; });
    // log1p: grad / (1 + x)
    case UnaryOp::Log1p: return run([](T dy, T v) { return dy / (T(1) + v); });
    // sqrt: grad / (2 sqrt(x))
    case UnaryOp::Sqrt: return run([](T dy, T v) { return dy / (T(2) * std::sqrt(v)); });
    // rsqrt: -grad / 2 * x^(-3/2) = -grad / 2 * rsqrt(x)^3
    case UnaryOp::Rsqrt:
      return run([](T dy, T v) {
        const T r = T(1) / std::sqrt(v);
        return T(-0.5) * dy * r * r * r;
      });
    // abs: grad * sign(x), 0 at x = 0
    case UnaryOp::Abs: return run([](T dy, T v) { return dy * sign_of(v); });
    // sign: 0 everywhere (a step function)
    case UnaryOp::Sign: return run([](T, T) { return T(0); });
    // reciprocal: -grad / x^2
    case UnaryOp::Reciprocal: return run([](T dy, T v) { return -dy / (v * v); });
    // square: 2 x grad
    case UnaryOp::Square: return run([](T dy, T v) { return T(2) * v * dy; });
    // tanh: grad * (1 - tanh(x)^2)
    case UnaryOp::Tanh:
      return run([](T dy, T v) {
        const T t = std::tanh(v);
        return dy * (T(1) - t * t);
      });
    // sigmoid: grad * s (1 - s)
    case UnaryOp::Sigmoid:
      return run([](T dy, T v) {
        const T s = stable_sigmoid(v);
        return dy * s * (T(1) - s);
      });
    // relu: grad * (x > 0), 0 at x = 0
    case UnaryOp::Relu: return run([](T dy, T v) { return v > T(0) ? dy : T(0); });
    // gelu (erf): grad * (Phi(x) + x phi(x)), Phi the normal CDF, phi its density
    case UnaryOp::GeluErf:
      return run([](T dy, T v) {
        const T cdf = T(0.5) * (T(1) + std::erf(v * kSqrtHalf<T>));
        const T pdf = kInvSqrt2Pi<T> * std::exp(T(-0.5) * v * v);
        return dy * (cdf + v * pdf);
      });
    // gelu (tanh): u = k (x + c x^3), t = tanh(u);
    //   grad * (0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2))
    case UnaryOp::GeluTanh:
      return run([](T dy, T v) {
        const T v2 = v * v;
        const T t = std::tanh(kSqrt2OverPi<T> * (v + kGeluCubic<T> * v2 * v));
        const T du = kSqrt2OverPi<T> * (T(1) + T(3) * kGeluCubic<T> * v2);
        return dy * (T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * du);
      });
    // quick_gelu: s = sigmoid(1.702 x); grad * (s + 1.702 x s (1 - s))
    case UnaryOp::QuickGelu: {
      const auto f = [](T dy, T v) {
        const T s = stable_sigmoid(kQuickGelu<T> * v);
        return dy * (s + kQuickGelu<T> * v * s * (T(1) - s));
      };
      if constexpr (std::is_same_v<T, float>) {
        if (const auto kernel = vector_quick_gelu().backward) return map_binary_runs<T, T, T>(g, x, grad_in, f, kernel);
      }
      return run(f);
    }
    // x + alpha: grad
    case UnaryOp::AddScalar: return run([](T dy, T) { return dy; });
    // x * alpha: grad * alpha
    case UnaryOp::MulScalar: return run([=](T dy, T) { return dy * alpha; });
    // x^alpha: grad * alpha * x^(alpha - 1); exactly 0 for alpha = 0 (x^-1 at 0 is inf)
    case UnaryOp::PowScalar:
      if (alpha == T(0)) return run([](T, T) { return T(0); });
      return run([=](T dy, T v) { return dy * alpha * std::pow(v, alpha - T(1)); });
    // alpha - x: -grad
    case UnaryOp::RSubScalar: return run([](T dy, T) { return -dy; });
    // alpha / x: -grad * alpha / x^2
    case UnaryOp::RDivScalar: return run([=](T dy, T v) { return -dy * alpha / (v * v); });
    // clamp: grad where alpha <= x <= beta, else 0 (and 0 for NaN x)
    case UnaryOp::Clamp:
      return run([=](T dy, T v) { return (v >= alpha && v <= beta) ? dy : T(0); });
  }
  fail("unary_backward: unknown op ", static_cast<int>(op));
}

// max/min that propagate NaN from either side (as torch.maximum/minimum do)
template <typename T>
inline T nan_max(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    if (a != a) return a;
    if (b != b) return b;
  }
  return a < b ? b : a;
}
template <typename T>
inline T nan_min(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    if (a != a) return a;
    if (b != b) return b;
  }
  return b < a ? b : a;
}

template <typename T>
void binary_typed(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  auto arith = [&](auto f) {
    MMS_CHECK(out.dtype() == a.dtype(), binary_op_name(op), ": output dtype ",
              dtype_name(out.dtype()), " differs from input dtype ", dtype_name(a.dtype()));
    map_binary<T, T, T>(a, b, out, f);
  };
  auto compare = [&](auto f) {
    MMS_CHECK(out.dtype() == DType::Bool, binary_op_name(op), ": output must be bool, got ",
              dtype_name(out.dtype()));
    map_binary<T, T, bool>(a, b, out, f);
  };
  switch (op) {
    case BinaryOp::Add: return arith([](T x, T y) -> T { return x + y; });
    case BinaryOp::Sub: return arith([](T x, T y) -> T { return x - y; });
    case BinaryOp::Mul: return arith([](T x, T y) -> T { return x * y; });
    case BinaryOp::Div:
    case BinaryOp::Pow:
      if constexpr (std::is_floating_point_v<T>) {
        if (op == BinaryOp::Div) return arith([](T x, T y) { return x / y; });
        return arith([](T x, T y) { return std::pow(x, y); });
      } else {
        // integer division and powers have several reasonable meanings; cast first
        unsupported_dtype(binary_op_name(op), a.dtype());
      }
    case BinaryOp::Maximum: return arith([](T x, T y) { return nan_max(x, y); });
    case BinaryOp::Minimum: return arith([](T x, T y) { return nan_min(x, y); });
    case BinaryOp::Eq: return compare([](T x, T y) { return x == y; });
    case BinaryOp::Ne: return compare([](T x, T y) { return x != y; });
    case BinaryOp::Lt: return compare([](T x, T y) { return x < y; });
    case BinaryOp::Le: return compare([](T x, T y) { return x <= y; });
    case BinaryOp::Gt: return compare([](T x, T y) { return x > y; });
    case BinaryOp::Ge: return compare([](T x, T y) { return x >= y; });
  }
  fail("binary: unknown op ", static_cast<int>(op));
}

void check_same_shape(const char* op, const Tensor& a, const Tensor& out) {
  MMS_CHECK(a.shape() == out.shape(), op, ": operand shape ", shape_str(a.shape()),
            " differs from output shape ", shape_str(out.shape()),
            " (broadcast operands arrive expanded)");
}

}  // namespace

// A bfloat16 tensor widened (exactly) to a contiguous float32 one.
Tensor CpuBackend::widened(const Tensor& t) {
  Tensor wide = empty(t.shape(), DType::Float32);
  copy(t, wide);
  return wide;
}

void CpuBackend::unary(UnaryOp op, const Tensor& x, Tensor& out, double alpha, double beta) {
  const char* name = unary_op_name(op);
  check_same_shape(name, x, out);
  MMS_CHECK(x.dtype() == out.dtype(), name, ": output dtype ", dtype_name(out.dtype()),
            " differs from input dtype ", dtype_name(x.dtype()));
  if (x.dtype() == DType::BFloat16) {  // autocast's bf16 activations: float32 math, rounded once
    Tensor wide_out = empty(out.shape(), DType::Float32);
    unary_typed<float>(op, widened(x), wide_out, static_cast<float>(alpha), static_cast<float>(beta));
    copy(wide_out, out);
    return;
  }
  dispatch_floating(x.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    unary_typed<T>(op, x, out, static_cast<T>(alpha), static_cast<T>(beta));
  });
}

void CpuBackend::unary_backward(UnaryOp op, const Tensor& grad_out, const Tensor& x,
                                Tensor& grad_in, double alpha, double beta) {
  const char* name = unary_op_name(op);
  check_same_shape(name, x, grad_in);
  check_same_shape(name, grad_out, grad_in);
  MMS_CHECK(x.dtype() == grad_out.dtype() && x.dtype() == grad_in.dtype(), name,
            " backward: dtypes differ (x ", dtype_name(x.dtype()), ", grad ",
            dtype_name(grad_out.dtype()), ", grad_in ", dtype_name(grad_in.dtype()), ")");
  if (x.dtype() == DType::BFloat16) {  // as the forward: float32 math, rounded once
    Tensor wide_grad_in = empty(grad_in.shape(), DType::Float32);
    unary_backward_typed<float>(op, widened(grad_out), widened(x), wide_grad_in, static_cast<float>(alpha),
                                static_cast<float>(beta));
    copy(wide_grad_in, grad_in);
    return;
  }
  dispatch_floating(x.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    unary_backward_typed<T>(op, grad_out, x, grad_in, static_cast<T>(alpha),
                            static_cast<T>(beta));
  });
}

void CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  const char* name = binary_op_name(op);
  check_same_shape(name, a, out);
  check_same_shape(name, b, out);
  MMS_CHECK(a.dtype() == b.dtype(), name, ": operand dtypes differ (", dtype_name(a.dtype()),
            " and ", dtype_name(b.dtype()), ")");
  // Floating for everything; the integer types for the ops that are exact on them.
  dispatch_numeric(a.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    binary_typed<T>(op, a, b, out);
  });
}

void CpuBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out) {
  check_same_shape("where", cond, out);
  check_same_shape("where", a, out);
  check_same_shape("where", b, out);
  MMS_CHECK(cond.dtype() == DType::Bool || cond.dtype() == DType::UInt8,
            "where: condition must be bool or uint8, got ", dtype_name(cond.dtype()));
  MMS_CHECK(a.dtype() == out.dtype() && b.dtype() == out.dtype(), "where: dtypes differ (",
            dtype_name(a.dtype()), ", ", dtype_name(b.dtype()), " -> ", dtype_name(out.dtype()),
            ")");
  dispatch_all(out.dtype(), "where", [&](auto tag) {
    using T = typename decltype(tag)::type;
    // bool and uint8 are both one byte; read the condition as bytes
    const uint8_t* pc = static_cast<const uint8_t*>(cond.raw_data());
    const T* pa = static_cast<const T*>(a.raw_data());
    const T* pb = static_cast<const T*>(b.raw_data());
    T* res = static_cast<T*>(out.raw_data());
    strided_for<4>(out.shape(), {&cond.strides(), &a.strides(), &b.strides(), &out.strides()},
                   [&](const auto& off, const auto& st, int64_t n) {
                     const uint8_t* c = pc + off[0];
                     const T* x = pa + off[1];
                     const T* y = pb + off[2];
                     T* o = res + off[3];
                     for (int64_t j = 0; j < n; ++j) {
                       o[j * st[3]] = c[j * st[0]] ? x[j * st[1]] : y[j * st[2]];
                     }
                   });
  });
}

}  // namespace mms::cpu
