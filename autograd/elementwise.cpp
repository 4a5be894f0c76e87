// Elementwise ops and their derivatives. Binary gradients are summed back over
// broadcast dims with sum_to; unary derivatives live in the kernels' unary_backward
// (one fused pass: grad * f'(x)).
#include <cmath>
#include <limits>

#include "autograd/api.h"

namespace mms {

namespace {
using Grads = std::vector<Tensor>;

Tensor unary_op(UnaryOp op, const Tensor& x, double alpha = 0.0, double beta = 0.0) {
  Tensor y = ops::unary(op, x, alpha, beta);
  Tensor xs = saved(x);
  return record(unary_op_name(op), y, {x}, [op, xs, alpha, beta](const Tensor& g, const std::vector<bool>&) {
    return Grads{ops::unary_backward(op, g, xs, alpha, beta)};
  });
}

Tensor zeros_where(const Tensor& cond, const Tensor& g) {
  return ops::where(cond, full({}, 0.0, g.dtype(), g.device()), g);
}
}  // namespace

// d(a+b) = (g, g)
Tensor add(const Tensor& a, const Tensor& b) {
  Shape sa = a.shape(), sb = b.shape();
  return record("add", ops::add(a, b), {a, b}, [sa, sb](const Tensor& g, const std::vector<bool>& needs) {
    return Grads{needs[0] ? ops::sum_to(g, sa) : Tensor(), needs[1] ? ops::sum_to(g, sb) : Tensor()};
  });
}

// d(a-b) = (g, -g)
Tensor sub(const Tensor& a, const Tensor& b) {
  Shape sa = a.shape(), sb = b.shape();
  return record("sub", ops::sub(a, b), {a, b}, [sa, sb](const Tensor& g, const std::vector<bool>& needs) {
    return Grads{needs[0] ? ops::sum_to(g, sa) : Tensor(),
                 needs[1] ? ops::sum_to(ops::neg(g), sb) : Tensor()};
  });
}

// d(a*b) = (g*b, g*a)
Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor as = saved(a), bs = saved(b);
  return record("mul", ops::mul(a, b), {a, b}, [as, bs](const Tensor& g, const std::vector<bool>& needs) {
    return Grads{needs[0] ? ops::sum_to(ops::mul(g, bs), as.shape()) : Tensor(),
                 needs[1] ? ops::sum_to(ops::mul(g, as), bs.shape()) : Tensor()};
  });
}

// d(a/b) = (g/b, -g*a/b^2)
Tensor div(const Tensor& a, const Tensor& b) {
  Tensor as = saved(a), bs = saved(b);
  return record("div", ops::div(a, b), {a, b}, [as, bs](const Tensor& g, const std::vector<bool>& needs) {
    Tensor ga, gb;
    if (needs[0]) ga = ops::sum_to(ops::div(g, bs), as.shape());
    if (needs[1]) gb = ops::sum_to(ops::neg(ops::div(ops::mul(g, as), ops::square(bs))), bs.shape());
    return Grads{ga, gb};
  });
}

// d(a^b) = (g*b*a^(b-1), g*a^b*log a)
Tensor pow(const Tensor& a, const Tensor& b) {
  Tensor y = ops::binary(BinaryOp::Pow, a, b);
  Tensor as = saved(a), bs = saved(b), ys = saved(y);
  return record("pow", y, {a, b}, [as, bs, ys](const Tensor& g, const std::vector<bool>& needs) {
    Tensor ga, gb;
    if (needs[0]) {
      Tensor power = ops::binary(BinaryOp::Pow, as, ops::add_scalar(bs, -1.0));
      ga = ops::sum_to(ops::mul(g, ops::mul(bs, power)), as.shape());
    }
    if (needs[1]) gb = ops::sum_to(ops::mul(g, ops::mul(ys, ops::log(as))), bs.shape());
    return Grads{ga, gb};
  });
}

namespace {
// maximum/minimum: the gradient goes to the winner; on ties it is split in half
// (as PyTorch does), so the sum of both gradients is always g.
Tensor extremum(BinaryOp op, const Tensor& a, const Tensor& b) {
  Tensor as = saved(a), bs = saved(b);
  const char* name = binary_op_name(op);
  return record(name, ops::binary(op, a, b), {a, b}, [op, as, bs](const Tensor& g, const std::vector<bool>& needs) {
    Tensor half = ops::mul_scalar(g, 0.5);
    Tensor tie = ops::binary(BinaryOp::Eq, as, bs);
    Tensor a_wins = ops::binary(op == BinaryOp::Maximum ? BinaryOp::Gt : BinaryOp::Lt, as, bs);
    Tensor zero = full({}, 0.0, g.dtype(), g.device());
    Tensor ga, gb;
    if (needs[0]) ga = ops::sum_to(ops::where(tie, half, ops::where(a_wins, g, zero)), as.shape());
    if (needs[1]) gb = ops::sum_to(ops::where(tie, half, ops::where(a_wins, zero, g)), bs.shape());
    return Grads{ga, gb};
  });
}
}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) { return extremum(BinaryOp::Maximum, a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return extremum(BinaryOp::Minimum, a, b); }

Tensor add(const Tensor& a, double s) { return unary_op(UnaryOp::AddScalar, a, s); }
Tensor sub(const Tensor& a, double s) { return unary_op(UnaryOp::AddScalar, a, -s); }
Tensor rsub(double s, const Tensor& a) { return unary_op(UnaryOp::RSubScalar, a, s); }
Tensor mul(const Tensor& a, double s) { return unary_op(UnaryOp::MulScalar, a, s); }
Tensor div(const Tensor& a, double s) { return unary_op(UnaryOp::MulScalar, a, 1.0 / s); }
Tensor rdiv(double s, const Tensor& a) { return unary_op(UnaryOp::RDivScalar, a, s); }
Tensor pow(const Tensor& a, double exponent) { return unary_op(UnaryOp::PowScalar, a, exponent); }
Tensor neg(const Tensor& x) { return unary_op(UnaryOp::Neg, x); }
Tensor exp(const Tensor& x) { return unary_op(UnaryOp::Exp, x); }
Tensor log(const Tensor& x) { return unary_op(UnaryOp::Log, x); }
Tensor log1p(const Tensor& x) { return unary_op(UnaryOp::Log1p, x); }
Tensor sqrt(const Tensor& x) { return unary_op(UnaryOp::Sqrt, x); }
Tensor rsqrt(const Tensor& x) { return unary_op(UnaryOp::Rsqrt, x); }
Tensor abs(const Tensor& x) { return unary_op(UnaryOp::Abs, x); }
Tensor square(const Tensor& x) { return unary_op(UnaryOp::Square, x); }
Tensor tanh(const Tensor& x) { return unary_op(UnaryOp::Tanh, x); }
Tensor sigmoid(const Tensor& x) { return unary_op(UnaryOp::Sigmoid, x); }
Tensor relu(const Tensor& x) { return unary_op(UnaryOp::Relu, x); }
Tensor gelu(const Tensor& x, bool tanh_approximation) {
  return unary_op(tanh_approximation ? UnaryOp::GeluTanh : UnaryOp::GeluErf, x);
}
Tensor quick_gelu(const Tensor& x) { return unary_op(UnaryOp::QuickGelu, x); }

Tensor clamp(const Tensor& x, std::optional<double> low, std::optional<double> high) {
  const double inf = std::numeric_limits<double>::infinity();
  const double lo = low.value_or(-inf), hi = high.value_or(inf);
  MMS_CHECK(!(lo > hi), "clamp: min ", lo, " is greater than max ", hi);
  return unary_op(UnaryOp::Clamp, x, lo, hi);
}

// d where(c, a, b) = (g where c, g where !c)
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  Tensor cs = saved(cond);
  Shape sa = a.shape(), sb = b.shape();
  return record("where", ops::where(cond, a, b), {a, b},
                [cs, sa, sb](const Tensor& g, const std::vector<bool>& needs) {
                  Tensor zero = full({}, 0.0, g.dtype(), g.device());
                  Tensor ga, gb;
                  if (needs[0]) ga = ops::sum_to(ops::where(cs, g, zero), sa);
                  if (needs[1]) gb = ops::sum_to(ops::where(cs, zero, g), sb);
                  return Grads{ga, gb};
                });
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  Tensor ms = saved(mask);
  Shape sx = x.shape();
  return record("masked_fill", ops::masked_fill(x, mask, value), {x},
                [ms, sx](const Tensor& g, const std::vector<bool>&) {
                  return Grads{ops::sum_to(zeros_where(ms, g), sx)};
                });
}

// y = x * mask, mask = (u >= p ? 1/(1-p) : 0) with u the Philox uniform at (seed, offset)
// (one fused kernel, bit-identical to rand + compare + where + mul). d y = g * mask: the
// backward saves only (p, seed, offset) and regenerates the mask from the counter.
Tensor dropout(const Tensor& x, double p, bool training, uint64_t seed, uint64_t offset) {
  MMS_CHECK(p >= 0.0 && p <= 1.0, "dropout: probability must be in [0, 1], got ", p);
  if (!training || p == 0.0) return x;
  return record("dropout", ops::dropout(x, p, seed, offset), {x},
                [p, seed, offset](const Tensor& g, const std::vector<bool>&) {
                  return Grads{ops::dropout(g, p, seed, offset)};
                });
}

Tensor dropout(const Tensor& x, double p, bool training) {
  if (!training || p == 0.0) return x;
  const uint64_t offset = default_generator().reserve(static_cast<uint64_t>(x.numel()));
  return dropout(x, p, training, default_generator().seed(), offset);
}

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& x) { return neg(x); }
Tensor operator+(const Tensor& a, double s) { return add(a, s); }
Tensor operator-(const Tensor& a, double s) { return sub(a, s); }
Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
Tensor operator/(const Tensor& a, double s) { return div(a, s); }
Tensor operator+(double s, const Tensor& a) { return add(a, s); }
Tensor operator-(double s, const Tensor& a) { return rsub(s, a); }
Tensor operator*(double s, const Tensor& a) { return mul(a, s); }
Tensor operator/(double s, const Tensor& a) { return rdiv(s, a); }

}  // namespace mms
