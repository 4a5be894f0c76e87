// Float64 finite-difference gradchecks for every differentiable op, on random
// non-zero inputs, including non-contiguous (transposed, sliced) and broadcast
// operands and size-1 dims, which are built inside the checked function so the
// views' own gradients are exercised too.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/api.h"
#include "autograd/gradcheck.h"

using namespace mms;

namespace {
uint64_t next_seed = 100;

// Random float64 leaf in [low, high), away from zero when low > 0.
Tensor leaf(const Shape& shape, double low = -1.0, double high = 1.0) {
  Tensor t = uniform(shape, low, high, next_seed++, 0, DType::Float64);
  t.set_requires_grad(true);
  return t;
}

void expect_gradcheck(const TensorFunction& f, const std::vector<Tensor>& inputs) {
  GradcheckResult r = gradcheck(f, inputs);
  INFO(r.message);
  CHECK(r.ok);
}

Tensor positive(const Shape& shape) { return leaf(shape, 0.5, 2.0); }
}  // namespace

TEST_CASE("binary ops with broadcasting and views") {
  Tensor a = leaf({3, 4}), b = leaf({4}), c = positive({3, 1}), d = leaf({4, 3});
  expect_gradcheck([](auto& x) { return add(x[0], x[1]); }, {a, b});
  expect_gradcheck([](auto& x) { return sub(x[0], transpose(x[1], 0, 1)); }, {a, d});
  expect_gradcheck([](auto& x) { return mul(x[0], x[1]); }, {a, c});
  expect_gradcheck([](auto& x) { return div(x[0], x[1]); }, {a, c});
  expect_gradcheck([](auto& x) { return div(x[1], x[0]); }, {positive({3, 4}), b});
  expect_gradcheck([](auto& x) { return pow(x[0], x[1]); }, {positive({3, 4}), leaf({4})});
  expect_gradcheck([](auto& x) { return maximum(x[0], x[1]); }, {a, b});
  expect_gradcheck([](auto& x) { return minimum(x[0], transpose(x[1], 0, 1)); }, {a, d});
}

TEST_CASE("scalar variants") {
  Tensor a = leaf({2, 5});
  expect_gradcheck([](auto& x) { return x[0] * 3.0 + 1.5; }, {a});
  expect_gradcheck([](auto& x) { return 2.0 - x[0] / 4.0; }, {a});
  expect_gradcheck([](auto& x) { return 2.0 / x[0]; }, {positive({2, 5})});
  expect_gradcheck([](auto& x) { return pow(x[0], 2.5); }, {positive({2, 5})});
  expect_gradcheck([](auto& x) { return pow(x[0], 3.0); }, {a});
}

TEST_CASE("unary ops") {
  Tensor a = leaf({3, 5}, -2.0, 2.0), p = positive({3, 5});
  expect_gradcheck([](auto& x) { return neg(x[0]); }, {a});
  expect_gradcheck([](auto& x) { return exp(x[0]); }, {a});
  expect_gradcheck([](auto& x) { return log(x[0]); }, {p});
  expect_gradcheck([](auto& x) { return log1p(x[0]); }, {p});
  expect_gradcheck([](auto& x) { return sqrt(x[0]); }, {p});
  expect_gradcheck([](auto& x) { return rsqrt(x[0]); }, {p});
  expect_gradcheck([](auto& x) { return abs(x[0]); }, {a});
  expect_gradcheck([](auto& x) { return square(x[0]); }, {a});
  expect_gradcheck([](auto& x) { return clamp(x[0], -0.5, 0.7); }, {a});
  expect_gradcheck([](auto& x) { return clamp(x[0], std::nullopt, 0.3); }, {a});
  expect_gradcheck([](auto& x) { return tanh(x[0]); }, {a});
  expect_gradcheck([](auto& x) { return sigmoid(x[0]); }, {a});
  expect_gradcheck([](auto& x) { return relu(x[0]); }, {a});
  expect_gradcheck([](auto& x) { return gelu(x[0]); }, {a});
  expect_gradcheck([](auto& x) { return gelu(x[0], true); }, {a});
  expect_gradcheck([](auto& x) { return quick_gelu(transpose(x[0], 0, 1)); }, {a});
}

TEST_CASE("where, masked_fill and dropout") {
  Tensor a = leaf({3, 4}), b = leaf({4});
  Tensor cond = from_vector<bool>({true, false, true, true, false, false, true, false, true, true, false, true}, {3, 4});
  expect_gradcheck([cond](auto& x) { return where(cond, x[0], x[1]); }, {a, b});
  expect_gradcheck([cond](auto& x) { return masked_fill(x[0], cond, -7.0); }, {a});
  expect_gradcheck([](auto& x) { return dropout(x[0], 0.3, true, 5, 0); }, {a});
  // Dropout zeroes about p of the elements and scales the rest by 1/(1-p).
  Tensor ones_in = ones({10000}, DType::Float64);
  std::vector<double> dropped = dropout(ones_in, 0.25, true, 11, 0).to_vector<double>();
  int zeros_seen = 0;
  for (double v : dropped) {
    if (v == 0.0) ++zeros_seen;
    else CHECK(v == doctest::Approx(1.0 / 0.75));
  }
  CHECK(zeros_seen == doctest::Approx(2500).epsilon(0.08));
  CHECK(dropout(ones_in, 0.25, false, 11, 0).same_impl(ones_in));
}

TEST_CASE("reductions") {
  Tensor a = leaf({2, 3, 4});
  expect_gradcheck([](auto& x) { return sum(x[0]); }, {a});
  expect_gradcheck([](auto& x) { return sum(x[0], {0, 2}, true); }, {a});
  expect_gradcheck([](auto& x) { return mean(x[0], {-1}); }, {a});
  expect_gradcheck([](auto& x) { return mean(transpose(x[0], 0, 2), {1}, true); }, {a});
  expect_gradcheck([](auto& x) { return amax(x[0], {1}); }, {a});
  expect_gradcheck([](auto& x) { return logsumexp(x[0], {2}, true); }, {a});
  expect_gradcheck([](auto& x) { return logsumexp(x[0], {0, 1}); }, {a});
  // size-1 dims
  expect_gradcheck([](auto& x) { return sum(x[0], {1}); }, {leaf({3, 1, 2})});
  // summing zero rows (a bias gradient of an empty batch) gives zeros of the kept shape
  const Tensor empty_sum = ops::sum(zeros({0, 2, 3}, DType::Float64), {0});
  CHECK(empty_sum.shape() == Shape{2, 3});
  for (double value : empty_sum.to_vector<double>()) CHECK(value == 0.0);
}

TEST_CASE("amax splits the gradient across ties") {
  Tensor x = from_vector<double>({1.0, 3.0, 3.0, 2.0}, {4});
  x.set_requires_grad(true);
  amax(x).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0.0, 0.5, 0.5, 0.0});
}

TEST_CASE("views and shape ops") {
  Tensor a = leaf({2, 3, 4});
  expect_gradcheck([](auto& x) { return mul(reshape(x[0], {6, 4}), 2.0); }, {a});
  expect_gradcheck([](auto& x) { return flatten(permute(x[0], {2, 0, 1}), 1); }, {a});
  expect_gradcheck([](auto& x) { return narrow(x[0], 2, 1, 2) * 3.0; }, {a});
  expect_gradcheck([](auto& x) { return select(x[0], 1, 2) * 3.0; }, {a});
  expect_gradcheck([](auto& x) { return expand(x[0], {3, 4, 5}) * 1.0; }, {leaf({4, 1})});
  expect_gradcheck([](auto& x) { return squeeze(unsqueeze(x[0], 1), 1) * 1.0; }, {a});
  expect_gradcheck([](auto& x) { return contiguous(transpose(x[0], 0, 1)); }, {a});
}

TEST_CASE("matmul and linear") {
  expect_gradcheck([](auto& x) { return matmul(x[0], x[1]); }, {leaf({3, 4}), leaf({4, 5})});
  expect_gradcheck([](auto& x) { return matmul(x[0], x[1]); }, {leaf({2, 3, 4}), leaf({4, 2})});
  expect_gradcheck([](auto& x) { return matmul(x[0], x[1]); }, {leaf({2, 1, 3, 4}), leaf({3, 4, 2})});
  expect_gradcheck([](auto& x) { return matmul(transpose(x[0], -1, -2), x[1]); }, {leaf({2, 4, 3}), leaf({2, 4, 5})});
  expect_gradcheck([](auto& x) { return matmul(x[0], x[1]); }, {leaf({4}), leaf({4, 3})});
  expect_gradcheck([](auto& x) { return matmul(x[0], x[1]); }, {leaf({2, 3, 4}), leaf({4})});
  expect_gradcheck([](auto& x) { return matmul(x[0], x[1]); }, {leaf({5}), leaf({5})});
  expect_gradcheck([](auto& x) { return linear(x[0], x[1], x[2]); }, {leaf({2, 3, 4}), leaf({5, 4}), leaf({5})});
  expect_gradcheck([](auto& x) { return linear(x[0], x[1]); }, {leaf({3, 4}), leaf({1, 4})});
  expect_gradcheck([](auto& x) { return linear(transpose(x[0], 0, 1), x[1], x[2]); }, {leaf({4, 3}), leaf({2, 4}), leaf({2})});
}

TEST_CASE("softmax, log_softmax, layer_norm, normalize") {
  Tensor a = leaf({3, 5}, -3.0, 3.0);
  expect_gradcheck([](auto& x) { return softmax(x[0], -1); }, {a});
  expect_gradcheck([](auto& x) { return softmax(x[0], 0); }, {a});
  expect_gradcheck([](auto& x) { return log_softmax(x[0], 1); }, {a});
  expect_gradcheck([](auto& x) { return log_softmax(transpose(x[0], 0, 1), 0); }, {a});
  expect_gradcheck([](auto& x) { return layer_norm(x[0], x[1], x[2], 1e-5); }, {leaf({2, 3, 6}), leaf({6}), leaf({6})});
  expect_gradcheck([](auto& x) { return layer_norm(x[0], Tensor(), Tensor(), 1e-5); }, {leaf({4, 7})});
  expect_gradcheck([](auto& x) { return layer_norm(transpose(x[0], 0, 1), x[1], Tensor(), 0.1); }, {leaf({5, 3}), leaf({5})});
  // x feeds the norm and an add: the norm's backward folds the add's gradient into its own
  // (the residual stream of a pre-norm transformer), and in the reverse order of use
  expect_gradcheck([](auto& x) { return add(x[0], mul(layer_norm(x[0], x[1], x[2], 1e-5), x[3])); },
                   {leaf({2, 3, 6}), leaf({6}), leaf({6}), leaf({6})});
  expect_gradcheck([](auto& x) {
    Tensor h = add(x[0], layer_norm(x[0], x[1], Tensor(), 1e-5));
    return add(h, layer_norm(h, x[1], Tensor(), 1e-5));
  }, {leaf({4, 5}), leaf({5})});
  expect_gradcheck([](auto& x) { return mul(layer_norm(x[0], Tensor(), Tensor(), 1e-5), mul(x[0], x[0])); },
                   {leaf({3, 4})});
  expect_gradcheck([](auto& x) { return normalize(x[0], -1); }, {leaf({3, 4})});
  expect_gradcheck([](auto& x) { return normalize(x[0], 0); }, {leaf({3, 4})});
}

TEST_CASE("layer_norm forward matches the definition") {
  Tensor x = from_vector<double>({1, 2, 3, 4}, {1, 4});
  Tensor y = layer_norm(x, Tensor(), Tensor(), 0.0);
  // mean 2.5, biased variance 1.25
  const double r = 1.0 / std::sqrt(1.25);
  std::vector<double> v = y.to_vector<double>();
  CHECK(v[0] == doctest::Approx(-1.5 * r));
  CHECK(v[3] == doctest::Approx(1.5 * r));
}

TEST_CASE("embedding, index_select, gather") {
  Tensor ids = from_vector<int64_t>({2, 0, 2, 1, 3, 2}, {2, 3});  // repeated ids accumulate
  expect_gradcheck([ids](auto& x) { return embedding(x[0], ids); }, {leaf({4, 3})});
  Tensor idx = from_vector<int64_t>({1, 1, 0}, {3});
  expect_gradcheck([idx](auto& x) { return index_select(x[0], 0, idx); }, {leaf({2, 3})});
  expect_gradcheck([idx](auto& x) { return index_select(x[0], 1, idx); }, {leaf({2, 4})});
  Tensor gidx = from_vector<int64_t>({0, 2, 2, 1, 0, 0}, {2, 3});
  expect_gradcheck([gidx](auto& x) { return gather(x[0], 1, gidx); }, {leaf({2, 3})});
  Tensor gidx0 = from_vector<int64_t>({1, 0, 1}, {1, 3});
  expect_gradcheck([gidx0](auto& x) { return gather(x[0], 0, gidx0); }, {leaf({2, 3})});
}

TEST_CASE("cat, stack, split, chunk, repeat_interleave") {
  Tensor a = leaf({2, 3}), b = leaf({2, 2});
  expect_gradcheck([](auto& x) { return cat({x[0], x[1]}, 1); }, {a, b});
  expect_gradcheck([](auto& x) { return stack({x[0], transpose(x[1], 0, 1)}, 0); }, {leaf({2, 2}), b});
  expect_gradcheck([](auto& x) {
    std::vector<Tensor> parts = split(x[0], 2, 1);
    CHECK(parts.size() == 3);
    return parts[0] * 1.0 + parts[1] * 2.0;
  }, {leaf({3, 5})});
  expect_gradcheck([](auto& x) { return chunk(x[0], 2, 0)[1] * 3.0; }, {leaf({4, 2})});
  expect_gradcheck([](auto& x) { return repeat_interleave(x[0], 3, 0); }, {leaf({2, 2})});
  expect_gradcheck([](auto& x) { return repeat_interleave(x[0], 2, 1); }, {leaf({2, 3})});
}

TEST_CASE("scaled-dot-product attention with causal and key-padding masks") {
  // once per implementation (fused kernel, GEMMs + softmax); cuDNN's path applies only to
  // bf16 operands on CUDA, so choosing it leaves float64 CPU attention on the default path
  for (ops::AttentionPath path : {ops::AttentionPath::Fused, ops::AttentionPath::Gemm, ops::AttentionPath::Cudnn}) {
  ops::AttentionPathGuard scope(path);
  INFO("attention path " << static_cast<int>(path));
  Tensor q = leaf({2, 2, 3, 4}), k = leaf({2, 2, 5, 4}), v = leaf({2, 2, 5, 4});
  expect_gradcheck([](auto& x) { return scaled_dot_product_attention(x[0], x[1], x[2]); }, {q, k, v});
  Tensor keep = from_vector<bool>({true, true, true, false, false, true, true, true, true, true}, {2, 5});
  expect_gradcheck([keep](auto& x) { return scaled_dot_product_attention(x[0], x[1], x[2], keep); }, {q, k, v});
  Tensor qs = leaf({1, 2, 4, 3}), ks = leaf({1, 2, 4, 3}), vs = leaf({1, 2, 4, 3});
  Tensor keep4 = from_vector<bool>({true, true, true, false}, {1, 4});
  expect_gradcheck([keep4](auto& x) { return scaled_dot_product_attention(x[0], x[1], x[2], keep4, true); }, {qs, ks, vs});
  // the composite definition gives the same output
  Tensor out = scaled_dot_product_attention(qs, ks, vs, keep4, true);
  Tensor scores = ops::mul_scalar(ops::matmul(qs, ops::transpose(ks, -1, -2)), 1.0 / std::sqrt(3.0));
  std::vector<bool> allowed(16);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) allowed[i * 4 + j] = j <= i && j < 3;
  Tensor mask = from_vector<bool>(allowed, {4, 4});
  Tensor probs = ops::softmax(ops::where(mask, scores, full({}, -1e300, DType::Float64)), -1);
  Tensor expected = ops::matmul(probs, vs);
  std::vector<double> got = out.to_vector<double>(), want = expected.to_vector<double>();
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-12));
  // a query with no visible key gives a zero output and a zero gradient
  Tensor none = from_vector<bool>({false, false, false, false}, {1, 4});
  Tensor hidden = scaled_dot_product_attention(qs, ks, vs, none);
  for (double value : hidden.to_vector<double>()) CHECK(value == 0.0);
  }
}

TEST_CASE("packed self-attention: gradcheck, and the same values as attention over the split heads") {
  for (ops::AttentionPath path : {ops::AttentionPath::Fused, ops::AttentionPath::Gemm}) {
    ops::AttentionPathGuard scope(path);
    INFO("attention path " << static_cast<int>(path));
    const int64_t B = 2, L = 5, H = 2, Dh = 3;
    Tensor qkv = leaf({B, L, 3 * H * Dh});
    Tensor keep = from_vector<bool>({true, true, true, true, true, true, false, true, true, false}, {B, L});
    expect_gradcheck([keep](auto& x) { return packed_self_attention(x[0], H, keep, true); }, {qkv});
    expect_gradcheck([](auto& x) { return packed_self_attention(x[0], H); }, {qkv});
    // against splitting qkv into [B, H, L, Dh] heads by hand: output and gradient
    Tensor upstream = randn({B, L, H * Dh}, 77, 0, DType::Float64);
    Tensor packed_in = qkv.detach().set_requires_grad();
    Tensor packed_out = packed_self_attention(packed_in, H, keep, true);
    packed_out.backward(upstream);
    Tensor split_in = qkv.detach().set_requires_grad();
    std::vector<Tensor> parts = chunk(split_in, 3, 2);
    auto heads = [&](const Tensor& t) { return transpose(reshape(t, {B, L, H, Dh}), 1, 2); };
    Tensor attended = scaled_dot_product_attention(heads(parts[0]), heads(parts[1]), heads(parts[2]), keep, true);
    Tensor split_out = reshape(contiguous(transpose(attended, 1, 2)), {B, L, H * Dh});
    split_out.backward(upstream);
    const std::vector<double> got = packed_out.to_vector<double>(), want = split_out.to_vector<double>();
    for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-12));
    const std::vector<double> grad_got = packed_in.grad().to_vector<double>();
    const std::vector<double> grad_want = split_in.grad().to_vector<double>();
    for (size_t i = 0; i < grad_got.size(); ++i) CHECK(grad_got[i] == doctest::Approx(grad_want[i]).epsilon(1e-12));
  }
  CHECK_THROWS_AS(packed_self_attention(leaf({2, 5, 10}), 2), Error);  // 10 is not 3 * heads * Dh
}

TEST_CASE("autograd engine: accumulation, retain_graph, detach, no_grad, errors") {
  Tensor x = leaf({3});
  Tensor y = sum(x * x);
  y.backward();
  std::vector<double> g1 = x.grad().to_vector<double>(), xv = x.to_vector<double>();
  for (int i = 0; i < 3; ++i) CHECK(g1[i] == doctest::Approx(2 * xv[i]));
  // a second, fresh graph accumulates into .grad
  sum(x * 3.0).backward();
  std::vector<double> g2 = x.grad().to_vector<double>();
  for (int i = 0; i < 3; ++i) CHECK(g2[i] == doctest::Approx(2 * xv[i] + 3));
  // backward twice through a freed graph is a clear error
  CHECK_THROWS_AS(y.backward(), Error);
  // retain_graph allows it
  x.zero_grad();
  Tensor z = sum(exp(x));
  z.backward(ones({}, DType::Float64), true);
  z.backward(ones({}, DType::Float64), false);
  std::vector<double> g3 = x.grad().to_vector<double>();
  for (int i = 0; i < 3; ++i) CHECK(g3[i] == doctest::Approx(2 * std::exp(xv[i])));
  // non-scalar backward needs an upstream gradient
  CHECK_THROWS_AS((x * 2.0).backward(), Error);
  // detach and no_grad cut the graph
  CHECK(!(x.detach() * 2.0).requires_grad());
  {
    NoGradGuard guard;
    CHECK(!(x * 2.0).requires_grad());
  }
  CHECK((x * 2.0).requires_grad());
  // a diamond: x feeds two paths that meet again
  x.zero_grad();
  Tensor a = x * 2.0, b = exp(x);
  sum(a * b).backward();
  std::vector<double> g4 = x.grad().to_vector<double>();
  for (int i = 0; i < 3; ++i) CHECK(g4[i] == doctest::Approx(2 * std::exp(xv[i]) * (1 + xv[i])));
}

TEST_CASE("autograd engine: a folding backward receives its input's partial gradient and replaces it") {
  // h (an interior node) feeds an add directly and a folding op: as in a residual stream,
  // the add's backward runs first and hands h its gradient, which the folding op then
  // sees as h's partial.
  Tensor x = leaf({4});
  std::vector<double> seen_partial;
  auto twice_folding = [&](const Tensor& input, bool claim_fold_without_partial) {
    Tensor y = ops::mul_scalar(input.detach(), 2.0);
    return record_folding("twice", y, {input},
                          [&seen_partial, claim_fold_without_partial](const Tensor& g, const std::vector<bool>&,
                                                                      const std::vector<Tensor>& partials) {
                            const Tensor own = ops::mul_scalar(g, 2.0);
                            if (claim_fold_without_partial) return FoldedGrads{{own}, {true}};
                            if (!partials[0].defined()) return FoldedGrads{{own}, {false}};
                            seen_partial = partials[0].to_vector<double>();
                            return FoldedGrads{{ops::add(partials[0], own)}, {true}};
                          });
  };
  Tensor h = mul(x, 3.0);
  sum(add(h, mul(twice_folding(h, false), 5.0))).backward();  // d/dh = 1 + 2 * 5
  REQUIRE(seen_partial.size() == 4);
  for (double v : seen_partial) CHECK(v == 1.0);  // the add's gradient, not yet summed
  for (double v : x.grad().to_vector<double>()) CHECK(v == doctest::Approx(3.0 * 11.0));
  // where the other consumer's gradient arrives later, nothing is folded and the engine
  // adds the two as usual
  x.zero_grad();
  seen_partial.clear();
  Tensor h2 = mul(x, 3.0);
  sum(add(mul(h2, 5.0), twice_folding(h2, false))).backward();  // d/dh = 5 + 2
  CHECK(seen_partial.empty());
  for (double v : x.grad().to_vector<double>()) CHECK(v == doctest::Approx(3.0 * 7.0));
  // claiming to have folded a partial that did not exist is an error, not a lost gradient
  CHECK_THROWS_WITH_AS(sum(twice_folding(mul(x, 3.0), true)).backward(), doctest::Contains("had none"), Error);
}
