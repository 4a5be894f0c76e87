// bf16 mixed precision (autograd/autocast.h, issue 8): the raw bf16 x bf16 -> float32
// GEMM against a float32 GEMM of the bf16-rounded inputs, autocast's linear/matmul
// gradients against float32 formulas on rounded operands (and against plain float32 at
// DESIGN.md's bf16 tolerance), the CUDA GEMM against the CPU one (skipped without a
// GPU), and a short training run of the tiny CLIP pair scorer in fp32 vs bf16.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <optional>
#include <vector>

#include "autograd/api.h"
#include "autograd/autocast.h"
#include "losses/objective.h"
#include "nn/optim.h"
#include "nn/transformer.h"
#include "tensor/backend.h"
#include "tensor/ops.h"
#include "vlm/pair_scorer.h"

#ifdef MMS_WITH_CUDA
#include "cuda/gemm_lt.h"
#endif

#include "device_test_utils.h"

using namespace mms;
using mms::testing::relative_error;

namespace {

// The mixed GEMM vs float32 on the same (rounded) inputs: only the summation order may
// differ, and on the CPU not even that (the same float32 kernel runs on widened values).
constexpr double kSameInputsTolerance = 1e-6;
constexpr double kF32Tolerance = 1e-4;    // CPU vs CUDA, float32 accumulation on both
constexpr double kBf16Tolerance = 2e-2;   // DESIGN.md: bf16 vs float32

// Non-zero random float32 values (normal, shifted away from 0 on average).
Tensor random_f32(const Shape& shape, uint64_t seed) {
  return ops::add_scalar(randn(shape, seed, 0, DType::Float32), 0.25);
}
Tensor bf16(const Tensor& x) { return ops::cast(x, DType::BFloat16); }
// x rounded to bf16 and back: the values the mixed GEMM actually multiplies.
Tensor rounded(const Tensor& x) { return ops::cast(bf16(x), DType::Float32); }
// Every value of several float32 tensors, in order.
std::vector<float> concat_values(const std::vector<Tensor>& tensors) {
  std::vector<float> all;
  for (const Tensor& t : tensors) {
    const std::vector<float> v = t.to_vector<float>();
    all.insert(all.end(), v.begin(), v.end());
  }
  return all;
}

}  // namespace

TEST_CASE("bf16 matmul: float32 output equal to float32 matmul of the rounded inputs") {
  uint64_t seed = 100;
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{1, 1}, {1, 1}},     {{3, 5}, {5, 7}},           {{37, 61}, {61, 29}},
      {{2, 3, 17, 9}, {2, 3, 9, 13}},                   {{4, 6, 5}, {5, 3}},  // broadcast weight
      {{5}, {5, 2}},        {{7, 5}, {5}},              {{1, 33, 65}, {3, 65, 31}},  // broadcast batch
      {{129, 257}, {257, 67}}};
  for (const auto& [sa, sb] : cases) {
    INFO("matmul " << shape_str(sa) << " @ " << shape_str(sb));
    Tensor a = random_f32(sa, ++seed), b = random_f32(sb, ++seed);
    Tensor got = ops::matmul(bf16(a), bf16(b));
    CHECK(got.dtype() == DType::Float32);
    CHECK_WITHIN(got, ops::matmul(rounded(a), rounded(b)), kSameInputsTolerance, "bf16 matmul");
    // and it is a bf16-accurate version of the float32 product
    CHECK_WITHIN(got, ops::matmul(a, b), kBf16Tolerance, "bf16 vs float32 matmul");
  }
  // transposed operands (views): the GEMM's transpose flags, or a copy
  Tensor a = random_f32({19, 6}, ++seed), b = random_f32({11, 19}, ++seed);
  CHECK_WITHIN(ops::matmul(ops::transpose(bf16(a), 0, 1), ops::transpose(bf16(b), 0, 1)),
               ops::matmul(ops::transpose(rounded(a), 0, 1), ops::transpose(rounded(b), 0, 1)),
               kSameInputsTolerance, "transposed views");
  Tensor batched = random_f32({3, 23, 7}, ++seed), shared = random_f32({23, 5}, ++seed);
  CHECK_WITHIN(ops::matmul(ops::transpose(bf16(batched), -1, -2), bf16(shared)),
               ops::matmul(ops::transpose(rounded(batched), -1, -2), rounded(shared)), kSameInputsTolerance,
               "batched transposed @ shared");
}

TEST_CASE("bf16 linear: float32 output with a float32 bias") {
  uint64_t seed = 200;
  Tensor x = random_f32({2, 5, 37}, ++seed), w = random_f32({13, 37}, ++seed), bias = random_f32({13}, ++seed);
  Tensor got = ops::linear(bf16(x), bf16(w), bias);
  CHECK(got.dtype() == DType::Float32);
  CHECK(got.shape() == Shape{2, 5, 13});
  CHECK_WITHIN(got, ops::linear(rounded(x), rounded(w), bias), kSameInputsTolerance, "with bias");
  CHECK_WITHIN(ops::linear(bf16(x), bf16(w), Tensor()), ops::linear(rounded(x), rounded(w), Tensor()),
               kSameInputsTolerance, "without bias");
  // a bf16 bias is refused with the op and the dtypes named
  try {
    ops::linear(bf16(x), bf16(w), bf16(bias));
    FAIL("expected an error for a bfloat16 bias");
  } catch (const Error& e) {
    const std::string message = e.what();
    CHECK(message.find("linear") != std::string::npos);
    CHECK(message.find("bfloat16") != std::string::npos);
  }
}

TEST_CASE("bf16 bmm: alpha, beta and every transpose combination on the backend") {
  uint64_t seed = 300;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      INFO("bmm trans_a " << ta << " trans_b " << tb);
      const int64_t B = 3, M = 13, N = 7, K = 21;
      Tensor A = random_f32(ta ? Shape{B, K, M} : Shape{B, M, K}, ++seed);
      Tensor Bm = random_f32(tb ? Shape{1, N, K} : Shape{1, K, N}, ++seed);  // broadcast batch
      Tensor C = random_f32({B, M, N}, ++seed);
      Tensor got = C.clone(), ref = C.clone();
      cpu_backend().bmm(bf16(A), bf16(Bm), got, ta, tb, 0.5, 2.0);
      cpu_backend().bmm(rounded(A), rounded(Bm), ref, ta, tb, 0.5, 2.0);
      CHECK_WITHIN(got, ref, kSameInputsTolerance, "bmm");
    }
  }
  // mixed dtypes other than bf16 x bf16 -> float32 are refused
  Tensor out = zeros({1, 2, 2});
  CHECK_THROWS_AS(cpu_backend().bmm(bf16(random_f32({1, 2, 3}, 1)), random_f32({1, 3, 2}, 2), out, false, false,
                                    1.0, 0.0),
                  Error);
}

TEST_CASE("autocast: the guard is thread-local state, nests, and restores") {
  CHECK_FALSE(autocast_dtype().has_value());
  {
    AutocastGuard outer(DType::BFloat16);
    CHECK(autocast_dtype() == DType::BFloat16);
    {
      AutocastGuard off(std::nullopt);
      CHECK_FALSE(autocast_dtype().has_value());
    }
    CHECK(autocast_dtype() == DType::BFloat16);
  }
  CHECK_FALSE(autocast_dtype().has_value());
  CHECK_THROWS_AS(AutocastGuard(DType::Float16), Error);
  CHECK_FALSE(autocast_dtype().has_value());
}

TEST_CASE("autocast linear: forward and gradients are the mixed GEMMs of bf16 operands") {
  uint64_t seed = 400;
  Tensor x = random_f32({2, 7, 37}, ++seed).set_requires_grad();
  Tensor w = random_f32({19, 37}, ++seed).set_requires_grad();
  Tensor bias = random_f32({19}, ++seed).set_requires_grad();
  Tensor upstream = random_f32({2, 7, 19}, ++seed);

  Tensor y;
  {
    AutocastGuard autocast(DType::BFloat16);
    y = linear(x, w, bias);
  }
  // backward after the guard ended still runs the recorded mixed GEMMs
  y.backward(upstream);
  CHECK(y.dtype() == DType::Float32);
  REQUIRE(x.grad().defined());
  REQUIRE(w.grad().defined());
  REQUIRE(bias.grad().defined());
  CHECK(x.grad().dtype() == DType::Float32);
  CHECK(w.grad().dtype() == DType::Float32);
  CHECK(bias.grad().dtype() == DType::Float32);

  // float32 formulas on the bf16-rounded operands and upstream gradient
  const Tensor rx = ops::reshape(rounded(x.detach()), {-1, 37}), rw = rounded(w.detach());
  const Tensor rg = ops::reshape(rounded(upstream), {-1, 19});
  CHECK_WITHIN(y, ops::linear(rounded(x.detach()), rw, bias.detach()), kSameInputsTolerance, "y");
  CHECK_WITHIN(x.grad(), ops::reshape(ops::matmul(rg, rw), {2, 7, 37}), kSameInputsTolerance, "grad x");
  CHECK_WITHIN(w.grad(), ops::matmul(ops::transpose(rg, 0, 1), rx), kSameInputsTolerance, "grad w");
  // the bias gradient sums the same bf16 upstream the weight gradient's GEMM reads (the
  // two come from one GEMM on CUDA: ops::linear_weight_grad), as torch's autocast does
  CHECK_WITHIN(bias.grad(), ops::sum(rg, {0}), kSameInputsTolerance, "grad bias");

  // ... and within the bf16 tolerance of plain float32
  Tensor x32 = x.detach().clone().set_requires_grad(), w32 = w.detach().clone().set_requires_grad();
  Tensor b32 = bias.detach().clone().set_requires_grad();
  Tensor y32 = linear(x32, w32, b32);
  y32.backward(upstream);
  CHECK_WITHIN(y, y32, kBf16Tolerance, "y vs float32");
  CHECK_WITHIN(x.grad(), x32.grad(), kBf16Tolerance, "grad x vs float32");
  CHECK_WITHIN(w.grad(), w32.grad(), kBf16Tolerance, "grad w vs float32");
  CHECK_WITHIN(bias.grad(), b32.grad(), kBf16Tolerance, "grad bias vs float32");
}

TEST_CASE("autocast bf16 activations: a bf16-output linear, bf16 quick_gelu, and the MLP they make") {
  uint64_t seed = 450;
  // The bf16-output linear is the float32-output one (bias rounded to bf16 first),
  // rounded once: the same float32 accumulation, only the store differs.
  const Tensor x = random_f32({3, 5, 24}, ++seed), w = random_f32({40, 24}, ++seed), b = random_f32({40}, ++seed);
  {
    AutocastGuard autocast(DType::BFloat16);
    const Tensor y = linear(x, w, b, AutocastOutput::BFloat16);
    CHECK(y.dtype() == DType::BFloat16);
    const Tensor want = ops::linear(bf16(x), bf16(w), rounded(b));  // float32 output
    CHECK(y.to(DType::Float32).to_vector<float>() == want.to(DType::BFloat16).to(DType::Float32).to_vector<float>());
    // without autocast (float32 GEMM) the option changes nothing
  }
  CHECK(linear(x, w, b, AutocastOutput::BFloat16).dtype() == DType::Float32);
  {  // the A/B switch (MMS_BF16_ACTIVATIONS=0) turns them back into float32 outputs
    const bool before = bf16_activations_enabled();
    set_bf16_activations_enabled(false);
    AutocastGuard autocast(DType::BFloat16);
    const Tensor y = linear(x, w, b, AutocastOutput::BFloat16);
    set_bf16_activations_enabled(before);
    CHECK(y.dtype() == DType::Float32);
  }
  // bf16 quick_gelu and its backward: float32 math, one rounding
  const Tensor h = bf16(random_f32({7, 33}, ++seed)), g = bf16(random_f32({7, 33}, ++seed));
  CHECK(ops::unary(UnaryOp::QuickGelu, h).to(DType::Float32).to_vector<float>() ==
        bf16(ops::unary(UnaryOp::QuickGelu, h.to(DType::Float32))).to(DType::Float32).to_vector<float>());
  CHECK(ops::unary_backward(UnaryOp::QuickGelu, g, h).to(DType::Float32).to_vector<float>() ==
        bf16(ops::unary_backward(UnaryOp::QuickGelu, g.to(DType::Float32), h.to(DType::Float32)))
            .to(DType::Float32)
            .to_vector<float>());

  // The MLP under autocast (fc1 -> bf16 quick_gelu -> fc2): float32 output and
  // gradients in every parameter's and the input's dtype, within the bf16 tolerance of
  // the float32 MLP.
  manual_seed(7);
  nn::MLP mlp(24, 96, nn::Activation::QuickGelu);
  {  // non-zero biases (they start at 0), so the bf16 bias is exercised with real values
    NoGradGuard no_grad;
    ops::copy_(mlp.fc1->bias, random_f32({96}, ++seed));
    ops::copy_(mlp.fc2->bias, random_f32({24}, ++seed));
  }
  {  // under the guard the MLP's up-projection (what MLP::forward calls) returns bf16
    AutocastGuard autocast(DType::BFloat16);
    CHECK(mlp.fc1->forward(x, AutocastOutput::BFloat16).dtype() == DType::BFloat16);
  }
  const Tensor upstream = random_f32({3, 5, 24}, ++seed);
  std::vector<Tensor> grads[2], outputs(2);
  for (int mixed = 0; mixed < 2; ++mixed) {
    mlp.zero_grad();
    Tensor xi = x.clone().set_requires_grad();
    std::optional<AutocastGuard> autocast;
    if (mixed) autocast.emplace(DType::BFloat16);
    outputs[mixed] = mlp.forward(xi);
    outputs[mixed].backward(upstream);
    grads[mixed] = {xi.grad(), mlp.fc1->weight.grad(), mlp.fc1->bias.grad(), mlp.fc2->weight.grad(),
                    mlp.fc2->bias.grad()};
  }
  CHECK(outputs[1].dtype() == DType::Float32);
  CHECK_WITHIN(outputs[1], outputs[0], kBf16Tolerance, "MLP output vs float32");
  const char* names[] = {"grad x", "grad fc1.weight", "grad fc1.bias", "grad fc2.weight", "grad fc2.bias"};
  for (int i = 0; i < 5; ++i) {
    INFO(names[i]);
    CHECK(grads[1][i].dtype() == DType::Float32);
    CHECK_WITHIN(grads[1][i], grads[0][i], kBf16Tolerance, names[i]);
  }
}

TEST_CASE("autocast bf16 activations: layer_norm writes a bf16 output and takes its bf16 gradient") {
  uint64_t seed = 950;
  const Tensor x = random_f32({6, 40}, ++seed), w = random_f32({40}, ++seed), b = random_f32({40}, ++seed);
  // ops: the float32 result rounded once; the backward of a bf16 gradient is that of its exact widening
  const ops::LayerNormResult wide = ops::layer_norm(x, w, b, 1e-5);
  const ops::LayerNormResult narrow = ops::layer_norm(x, w, b, 1e-5, DType::BFloat16);
  CHECK(narrow.y.dtype() == DType::BFloat16);
  CHECK(narrow.y.to_vector<float>() == wide.y.to(DType::BFloat16).to_vector<float>());
  CHECK(narrow.mean.dtype() == DType::Float32);
  const Tensor g = bf16(random_f32({6, 40}, ++seed));
  const ops::LayerNormGrads from_bf16 = ops::layer_norm_backward(g, x, w, narrow.mean, narrow.rstd, true);
  const ops::LayerNormGrads from_f32 =
      ops::layer_norm_backward(g.to(DType::Float32), x, w, wide.mean, wide.rstd, true);
  CHECK(from_bf16.grad_x.dtype() == DType::Float32);
  CHECK(from_bf16.grad_x.to_vector<float>() == from_f32.grad_x.to_vector<float>());
  CHECK(from_bf16.grad_weight.to_vector<float>() == from_f32.grad_weight.to_vector<float>());
  CHECK(from_bf16.grad_bias.to_vector<float>() == from_f32.grad_bias.to_vector<float>());
  CHECK_THROWS_AS(ops::layer_norm(x.to(DType::Float64), Tensor(), Tensor(), 1e-5, DType::BFloat16), Error);
  // autograd: bf16 only under autocast, and a gradient that reaches x and the parameters
  Tensor xs = x.clone().set_requires_grad(), ws = w.clone().set_requires_grad(), bs = b.clone().set_requires_grad();
  CHECK(layer_norm(xs, ws, bs, 1e-5, AutocastOutput::BFloat16).dtype() == DType::Float32);  // no guard
  AutocastGuard autocast(DType::BFloat16);
  Tensor y = layer_norm(xs, ws, bs, 1e-5, AutocastOutput::BFloat16);
  CHECK(y.dtype() == DType::BFloat16);
  y.backward(g);
  CHECK(xs.grad().to_vector<float>() == from_f32.grad_x.to_vector<float>());
  CHECK(ws.grad().to_vector<float>() == from_f32.grad_weight.to_vector<float>());
  CHECK(bs.grad().to_vector<float>() == from_f32.grad_bias.to_vector<float>());
}

TEST_CASE("autocast: packed self-attention over a bf16 projection equals attention over its split heads") {
  // the GEMM path (what CUDA runs by default) on bf16 operands, as the packed q/k/v
  // projection makes them under autocast: the same values and gradients, bit for bit
  ops::AttentionPathGuard path(ops::AttentionPath::Gemm);
  const int64_t B = 2, L = 7, H = 2, Dh = 16;
  uint64_t seed = 980;
  const Tensor qkv0 = bf16(random_f32({B, L, 3 * H * Dh}, ++seed));
  const Tensor upstream = bf16(random_f32({B, L, H * Dh}, ++seed));
  const Tensor keep = from_vector<bool>({true, true, true, true, true, false, false,
                                         true, true, true, true, true, true, true}, {B, L});
  AutocastGuard autocast(DType::BFloat16);
  Tensor packed_in = qkv0.clone().set_requires_grad();
  Tensor packed_out = packed_self_attention(packed_in, H, keep, true);
  packed_out.backward(upstream);
  Tensor split_in = qkv0.clone().set_requires_grad();
  const std::vector<Tensor> parts = chunk(split_in, 3, 2);
  auto heads = [&](const Tensor& t) { return transpose(reshape(t, {B, L, H, Dh}), 1, 2); };
  Tensor attended = scaled_dot_product_attention(heads(parts[0]), heads(parts[1]), heads(parts[2]), keep, true);
  Tensor split_out = reshape(contiguous(transpose(attended, 1, 2)), {B, L, H * Dh});
  split_out.backward(upstream);
  CHECK(packed_out.dtype() == DType::BFloat16);
  CHECK(packed_in.grad().dtype() == DType::BFloat16);
  CHECK(packed_out.to_vector<float>() == split_out.to_vector<float>());
  CHECK(packed_in.grad().to_vector<float>() == split_in.grad().to_vector<float>());
}

TEST_CASE("autocast: a bf16 activation used twice gets its two bf16 gradients summed in float32") {
  uint64_t seed = 470;
  const Tensor x = random_f32({4, 16}, ++seed);
  Tensor w = random_f32({12, 16}, ++seed).set_requires_grad(), w2 = random_f32({6, 12}, ++seed);
  const Tensor upstream = random_f32({4, 6}, ++seed);
  {
    AutocastGuard autocast(DType::BFloat16);
    const Tensor h = linear(x, w, Tensor(), AutocastOutput::BFloat16);
    REQUIRE(h.dtype() == DType::BFloat16);
    add(linear(quick_gelu(h), w2), linear(relu(h), w2)).backward(upstream);
  }
  // the same graph in float32: w's gradient within the bf16 tolerance
  Tensor w32 = w.detach().clone().set_requires_grad();
  const Tensor h32 = linear(x, w32);
  add(linear(quick_gelu(h32), w2), linear(relu(h32), w2)).backward(upstream);
  CHECK(w.grad().dtype() == DType::Float32);
  CHECK_WITHIN(w.grad(), w32.grad(), kBf16Tolerance, "grad w through a bf16 activation used twice");
}

TEST_CASE("autocast matmul: broadcast batch, transposed operand, float32 gradients") {
  uint64_t seed = 500;
  Tensor a = random_f32({2, 3, 17, 9}, ++seed).set_requires_grad();
  Tensor b_stored = random_f32({13, 9}, ++seed).set_requires_grad();  // used transposed: [9, 13]
  Tensor upstream = random_f32({2, 3, 17, 13}, ++seed);
  Tensor c;
  {
    AutocastGuard autocast(DType::BFloat16);
    c = matmul(a, transpose(b_stored, 0, 1));
    c.backward(upstream);
  }
  CHECK(c.dtype() == DType::Float32);
  CHECK(a.grad().dtype() == DType::Float32);
  CHECK(b_stored.grad().dtype() == DType::Float32);
  const Tensor ra = rounded(a.detach()), rbt = ops::transpose(rounded(b_stored.detach()), 0, 1);
  const Tensor rg = rounded(upstream);
  CHECK_WITHIN(c, ops::matmul(ra, rbt), kSameInputsTolerance, "c");
  CHECK_WITHIN(a.grad(), ops::matmul(rg, ops::transpose(rbt, 0, 1)), kSameInputsTolerance, "grad a");
  // dB^T summed over the broadcast batch dims, then transposed back to b's storage
  const Tensor grad_bt = ops::sum_to(ops::matmul(ops::transpose(ra, -1, -2), rg), {9, 13});
  CHECK_WITHIN(b_stored.grad(), ops::transpose(grad_bt, 0, 1), kSameInputsTolerance, "grad b");

  Tensor a32 = a.detach().clone().set_requires_grad(), b32 = b_stored.detach().clone().set_requires_grad();
  Tensor c32 = matmul(a32, transpose(b32, 0, 1));
  c32.backward(upstream);
  CHECK_WITHIN(c, c32, kBf16Tolerance, "c vs float32");
  CHECK_WITHIN(a.grad(), a32.grad(), kBf16Tolerance, "grad a vs float32");
  CHECK_WITHIN(b_stored.grad(), b32.grad(), kBf16Tolerance, "grad b vs float32");
}

TEST_CASE("autocast leaves everything else alone: no guard, float64, vectors") {
  uint64_t seed = 600;
  Tensor a = random_f32({5, 8}, ++seed), b = random_f32({8, 3}, ++seed);
  // no guard: the float32 GEMM, bit for bit
  const std::vector<float> plain = matmul(a, b).to_vector<float>();
  CHECK(plain == ops::matmul(a, b).to_vector<float>());
  AutocastGuard autocast(DType::BFloat16);
  // float64 operands are never cast (gradcheck stays float64)
  Tensor a64 = a.to(DType::Float64), b64 = b.to(DType::Float64);
  Tensor c64 = matmul(a64, b64);
  CHECK(c64.dtype() == DType::Float64);
  CHECK(c64.to_vector<double>() == ops::matmul(a64, b64).to_vector<double>());
  // vector operands go through the same mixed GEMM
  Tensor v = random_f32({8}, ++seed);
  CHECK_WITHIN(matmul(a, v), ops::matmul(rounded(a), rounded(v)), kSameInputsTolerance, "matrix @ vector");
}

namespace {
struct AttentionRun {
  Tensor out, grad_q, grad_k, grad_v;
};

// Attention over transposed head views ([B, L, H, D] seen as [B, H, L, D], as the model
// passes them), causal with a key mask, and the gradients of a fixed upstream.
AttentionRun run_attention(const Tensor& q_blhd, const Tensor& k_blhd, const Tensor& v_blhd, const Tensor& upstream,
                           Device device, bool autocast_on) {
  Tensor q = q_blhd.clone().to(device).set_requires_grad(), k = k_blhd.clone().to(device).set_requires_grad();
  Tensor v = v_blhd.clone().to(device).set_requires_grad();
  const int64_t batch = q_blhd.size(0), length = q_blhd.size(1);
  std::vector<bool> keep(static_cast<size_t>(batch * length), true);
  keep[static_cast<size_t>(length - 1)] = false;  // batch 0 hides its last key
  Tensor key_keep = from_vector<bool>(keep, {batch, length}).to(device);
  std::optional<AutocastGuard> autocast;
  if (autocast_on) autocast.emplace(DType::BFloat16);
  Tensor out = scaled_dot_product_attention(transpose(q, 1, 2), transpose(k, 1, 2), transpose(v, 1, 2), key_keep,
                                            /*causal=*/true);
  out.backward(upstream.to(device));
  return {out, q.grad(), k.grad(), v.grad()};
}
}  // namespace

TEST_CASE("autocast attention (GEMM path): bf16 QK^T and PV, float32 scores, float32 gradients") {
  uint64_t seed = 650;
  const Tensor q = random_f32({2, 9, 3, 8}, ++seed), k = random_f32({2, 9, 3, 8}, ++seed);
  const Tensor v = random_f32({2, 9, 3, 8}, ++seed), upstream = random_f32({2, 3, 9, 8}, ++seed);
  ops::AttentionPathGuard gemm(ops::AttentionPath::Gemm);
  const AttentionRun mixed = run_attention(q, k, v, upstream, Device::cpu(), true);
  CHECK(mixed.out.dtype() == DType::Float32);
  CHECK(mixed.grad_q.dtype() == DType::Float32);
  // float32 attention of the bf16-rounded operands: the same function up to the
  // probabilities' rounding to bf16 as PV's operand (~2^-9 relative each)
  const AttentionRun on_rounded = run_attention(rounded(q), rounded(k), rounded(v), upstream, Device::cpu(), false);
  CHECK_WITHIN(mixed.out, on_rounded.out, 5e-3, "out vs float32 on rounded operands");
  // and a bf16-accurate version of plain float32 attention, gradients included
  const AttentionRun fp32 = run_attention(q, k, v, upstream, Device::cpu(), false);
  CHECK_WITHIN(mixed.out, fp32.out, kBf16Tolerance, "out vs float32");
  CHECK_WITHIN(mixed.grad_q, fp32.grad_q, kBf16Tolerance, "grad q vs float32");
  CHECK_WITHIN(mixed.grad_k, fp32.grad_k, kBf16Tolerance, "grad k vs float32");
  CHECK_WITHIN(mixed.grad_v, fp32.grad_v, kBf16Tolerance, "grad v vs float32");
  CHECK(relative_error(mixed.out, fp32.out) > 0.0);  // it did run in bf16
  {
    // No keys at all: the GEMM path does not apply, and autocast leaves attention float32.
    AutocastGuard autocast(DType::BFloat16);
    Tensor none = zeros({2, 3, 0, 8});
    Tensor out = scaled_dot_product_attention(transpose(q, 1, 2), none, none);
    CHECK(out.dtype() == DType::Float32);
    CHECK(out.shape() == Shape{2, 3, 9, 8});
  }
  {
    // bf16 operands passed in directly: a bf16 output and bf16 gradients, like the inputs.
    Tensor qb = bf16(transpose(q, 1, 2)).set_requires_grad(), kb = bf16(transpose(k, 1, 2)).set_requires_grad();
    Tensor vb = bf16(transpose(v, 1, 2)).set_requires_grad();
    Tensor out = scaled_dot_product_attention(qb, kb, vb);
    CHECK(out.dtype() == DType::BFloat16);
    const double scale = 1.0 / std::sqrt(8.0);
    const ops::AttentionResult r = ops::attention(qb.detach(), kb.detach(), vb.detach(), Tensor(), false, scale);
    CHECK(r.out.dtype() == DType::Float32);  // the op's default: float32 PV
    // PV written bf16 by the GEMM: the float32 output rounded once, bit for bit
    CHECK(out.to(DType::Float32).to_vector<float>() == r.out.to(DType::BFloat16).to(DType::Float32).to_vector<float>());
    out.backward(bf16(upstream));
    CHECK(qb.grad().dtype() == DType::BFloat16);
    CHECK(vb.grad().dtype() == DType::BFloat16);
    // written bf16 by the GEMMs themselves: the float32 gradients rounded once, bit for bit
    const ops::AttentionGrads want = ops::attention_backward(bf16(upstream), qb.detach(), kb.detach(), vb.detach(),
                                                             Tensor(), r.lse, Tensor(), false, scale);
    CHECK(want.grad_q.dtype() == DType::Float32);
    CHECK(qb.grad().to(DType::Float32).to_vector<float>() ==
          want.grad_q.to(DType::BFloat16).to(DType::Float32).to_vector<float>());
    CHECK(kb.grad().to(DType::Float32).to_vector<float>() ==
          want.grad_k.to(DType::BFloat16).to(DType::Float32).to_vector<float>());
    CHECK(vb.grad().to(DType::Float32).to_vector<float>() ==
          want.grad_v.to(DType::BFloat16).to(DType::Float32).to_vector<float>());
  }
  // The fused path computes in float32 under autocast too: bit-identical to no autocast.
  ops::AttentionPathGuard fused(ops::AttentionPath::Fused);
  const AttentionRun fused_autocast = run_attention(q, k, v, upstream, Device::cpu(), true);
  const AttentionRun fused_plain = run_attention(q, k, v, upstream, Device::cpu(), false);
  CHECK(fused_autocast.out.to_vector<float>() == fused_plain.out.to_vector<float>());
  CHECK(fused_autocast.grad_k.to_vector<float>() == fused_plain.grad_k.to_vector<float>());
}

TEST_CASE("cuda: bf16 GEMM and autocast gradients match the CPU") {
  SKIP_WITHOUT_GPU();
  const Device gpu = Device::cuda(0);
  uint64_t seed = 700;
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{3, 5}, {5, 7}}, {{400, 768}, {768, 96}}, {{2, 3, 17, 9}, {2, 3, 9, 13}}, {{4, 6, 5}, {5, 3}},
      {{1, 33, 65}, {3, 65, 31}}, {{7, 5}, {5}}};
  for (const auto& [sa, sb] : cases) {
    INFO("matmul " << shape_str(sa) << " @ " << shape_str(sb));
    Tensor a = bf16(random_f32(sa, ++seed)), b = bf16(random_f32(sb, ++seed));
    Tensor got = ops::matmul(a.to(gpu), b.to(gpu));
    CHECK(got.dtype() == DType::Float32);
    CHECK_WITHIN(got, ops::matmul(a, b), kF32Tolerance, "bf16 matmul");
  }
  Tensor ta = bf16(random_f32({19, 6}, ++seed)), tb = bf16(random_f32({11, 19}, ++seed));
  CHECK_WITHIN(ops::matmul(ops::transpose(ta.to(gpu), 0, 1), ops::transpose(tb.to(gpu), 0, 1)),
               ops::matmul(ops::transpose(ta, 0, 1), ops::transpose(tb, 0, 1)), kF32Tolerance, "transposed views");
  for (bool ta_flag : {false, true}) {
    for (bool tb_flag : {false, true}) {
      INFO("bmm trans_a " << ta_flag << " trans_b " << tb_flag);
      const int64_t B = 3, M = 13, N = 7, K = 21;
      Tensor A = bf16(random_f32(ta_flag ? Shape{B, K, M} : Shape{B, M, K}, ++seed));
      Tensor Bm = bf16(random_f32(tb_flag ? Shape{1, N, K} : Shape{1, K, N}, ++seed));
      Tensor C = random_f32({B, M, N}, ++seed);
      Tensor C_gpu = C.to(gpu).clone();
      cpu_backend().bmm(A, Bm, C, ta_flag, tb_flag, 0.5, 2.0);
      cuda_backend().bmm(A.to(gpu), Bm.to(gpu), C_gpu, ta_flag, tb_flag, 0.5, 2.0);
      CHECK_WITHIN(C_gpu, C, kF32Tolerance, "bmm");
    }
  }
  // autocast linear on the GPU: forward and all three gradients against the CPU
  Tensor x = random_f32({2, 50, 96}, ++seed), w = random_f32({40, 96}, ++seed), bias = random_f32({40}, ++seed);
  Tensor upstream = random_f32({2, 50, 40}, ++seed);
  std::vector<Tensor> results[2];
  for (int on_gpu = 0; on_gpu < 2; ++on_gpu) {
    const Device device = on_gpu ? gpu : Device::cpu();
    Tensor xd = x.clone().to(device).set_requires_grad(), wd = w.clone().to(device).set_requires_grad();
    Tensor bd = bias.clone().to(device).set_requires_grad();
    AutocastGuard autocast(DType::BFloat16);
    Tensor y = linear(xd, wd, bd);
    y.backward(upstream.to(device));
    results[on_gpu] = {y, xd.grad(), wd.grad(), bd.grad()};
  }
  const char* names[] = {"y", "grad x", "grad w", "grad bias"};
  for (int i = 0; i < 4; ++i) CHECK_WITHIN(results[1][i], results[0][i], kF32Tolerance, names[i]);
  // autocast attention (the GPU takes the GEMM path for short sequences): against the
  // CPU's GEMM path. Identical bf16 operands and float32 sums; a probability that rounds
  // to the other bf16 neighbour moves an output by ~2^-9 of one term, hence 5e-3.
  const Tensor q = random_f32({2, 9, 3, 8}, ++seed), k = random_f32({2, 9, 3, 8}, ++seed);
  const Tensor v = random_f32({2, 9, 3, 8}, ++seed), attention_upstream = random_f32({2, 3, 9, 8}, ++seed);
  const AttentionRun on_gpu = run_attention(q, k, v, attention_upstream, gpu, true);
  ops::AttentionPathGuard gemm(ops::AttentionPath::Gemm);
  const AttentionRun on_cpu = run_attention(q, k, v, attention_upstream, Device::cpu(), true);
  CHECK_WITHIN(on_gpu.out, on_cpu.out, 5e-3, "attention out");
  CHECK_WITHIN(on_gpu.grad_q, on_cpu.grad_q, 5e-3, "attention grad q");
  CHECK_WITHIN(on_gpu.grad_k, on_cpu.grad_k, 5e-3, "attention grad k");
  CHECK_WITHIN(on_gpu.grad_v, on_cpu.grad_v, 5e-3, "attention grad v");
}

// bf16 activations on the GPU (cuBLAS / cuBLASLt writing bf16, the bf16 unary kernels)
// against the CPU. Both round float32 values once; a value whose float32 sum differs in
// the last bits (summation order, expf) can round to the neighbouring bf16, 2^-8
// relative at most, hence 1e-2.
TEST_CASE("cuda: autocast's bf16 activations (bf16 GEMM outputs, bf16 quick_gelu, the MLP) match the CPU") {
  SKIP_WITHOUT_GPU();
  constexpr double kBf16Rounding = 1e-2;
  const Device gpu = Device::cuda(0);
  uint64_t seed = 900;
  for (bool ta_flag : {false, true}) {
    for (bool tb_flag : {false, true}) {
      INFO("bf16-output bmm trans_a " << ta_flag << " trans_b " << tb_flag);
      const int64_t B = 3, M = 13, N = 8, K = 21;
      Tensor A = bf16(random_f32(ta_flag ? Shape{B, K, M} : Shape{B, M, K}, ++seed));
      Tensor Bm = bf16(random_f32(tb_flag ? Shape{1, N, K} : Shape{1, K, N}, ++seed));
      Tensor C = bf16(random_f32({B, M, N}, ++seed));
      Tensor C_gpu = C.to(gpu).clone();
      cpu_backend().bmm(A, Bm, C, ta_flag, tb_flag, 0.5, 1.0);
      cuda_backend().bmm(A.to(gpu), Bm.to(gpu), C_gpu, ta_flag, tb_flag, 0.5, 1.0);
      CHECK_WITHIN(C_gpu.to(DType::Float32), C.to(DType::Float32), kBf16Rounding, "bmm bf16 out");
    }
  }
  // the bf16-output linear (cuBLASLt's bias epilogue writing bf16, and without cuBLASLt)
  const Tensor x = bf16(random_f32({2, 50, 96}, ++seed)), w = bf16(random_f32({40, 96}, ++seed));
  const Tensor b = bf16(random_f32({40}, ++seed));
  const Tensor y_cpu = ops::linear(x, w, b, DType::BFloat16);
  CHECK_WITHIN(ops::linear(x.to(gpu), w.to(gpu), b.to(gpu), DType::BFloat16).to(DType::Float32),
               y_cpu.to(DType::Float32), kBf16Rounding, "linear bf16 out");
#ifdef MMS_WITH_CUDA
  {  // the bmm path: output pre-filled with the bias, beta = 1
    const bool lt_before = cuda::cublaslt_enabled();
    cuda::set_cublaslt_enabled(false);
    const Tensor y_bmm = ops::linear(x.to(gpu), w.to(gpu), b.to(gpu), DType::BFloat16);
    cuda::set_cublaslt_enabled(lt_before);
    CHECK_WITHIN(y_bmm.to(DType::Float32), y_cpu.to(DType::Float32), kBf16Rounding, "linear bf16 out without cuBLASLt");
  }
#endif
  // bf16 quick_gelu forward and backward, contiguous (n % 4 != 0 for the tail) and strided
  for (const Shape& shape : std::vector<Shape>{{7, 33}, {4096}, {3, 5, 128}}) {
    INFO("bf16 quick_gelu " << shape_str(shape));
    const Tensor h = bf16(random_f32(shape, ++seed)), g = bf16(random_f32(shape, ++seed));
    CHECK_WITHIN(ops::unary(UnaryOp::QuickGelu, h.to(gpu)).to(DType::Float32),
                 ops::unary(UnaryOp::QuickGelu, h).to(DType::Float32), kBf16Rounding, "forward");
    CHECK_WITHIN(ops::unary_backward(UnaryOp::QuickGelu, g.to(gpu), h.to(gpu)).to(DType::Float32),
                 ops::unary_backward(UnaryOp::QuickGelu, g, h).to(DType::Float32), kBf16Rounding, "backward");
  }
  const Tensor hs = bf16(random_f32({6, 10}, ++seed));
  CHECK_WITHIN(ops::unary(UnaryOp::QuickGelu, ops::transpose(hs.to(gpu), 0, 1)).to(DType::Float32),
               ops::unary(UnaryOp::QuickGelu, ops::transpose(hs, 0, 1)).to(DType::Float32), kBf16Rounding,
               "strided forward");
  // layer_norm with a bf16 output and its bf16 gradient ([rows, 768], CLIP's widest)
  {
    const Tensor x = random_f32({37, 768}, ++seed), w = random_f32({768}, ++seed), b = random_f32({768}, ++seed);
    const Tensor g = bf16(random_f32({37, 768}, ++seed));
    const ops::LayerNormResult ref = ops::layer_norm(x, w, b, 1e-5, DType::BFloat16);
    const ops::LayerNormResult got = ops::layer_norm(x.to(gpu), w.to(gpu), b.to(gpu), 1e-5, DType::BFloat16);
    CHECK(got.y.dtype() == DType::BFloat16);
    // Rounded to nearest like the CPU: at most one bf16 step apart (the GPU's float32
    // statistics against the CPU's double ones can tip a value over a rounding boundary),
    // and almost every element identical. Plus, where y = xhat * w + b cancels, the
    // float32 evaluation's own error, a few float32 steps of |xhat * w| + |b|: on the
    // H200, row 24 column 560 has xhat * w = -0.800447 and b = 0.800452, y = 4.65e-6,
    // whose bf16 step (2^-25) is smaller than one float32 step of 0.8 (2^-24); the
    // GPU's warp-order statistics and fused multiply-add gave 4.73857e-6, the CPU
    // 4.64916e-6 (both reproduced on the CPU by emulating the kernel's arithmetic).
    const std::vector<float> got_y = got.y.to(Device::cpu()).to_vector<float>(), ref_y = ref.y.to_vector<float>();
    const std::vector<float> xs = x.to_vector<float>(), ws = w.to_vector<float>(), bs = b.to_vector<float>();
    const std::vector<float> means = ref.mean.to_vector<float>(), rstds = ref.rstd.to_vector<float>();
    size_t identical = 0, beyond_one_step = 0;
    for (size_t i = 0; i < ref_y.size(); ++i) {
      const size_t row = i / 768, col = i % 768;
      const float terms = std::abs((xs[i] - means[row]) * rstds[row] * ws[col]) + std::abs(bs[col]);
      const float float32_error = 4.0f * std::ldexp(terms, -24);
      const float step = std::ldexp(1.0f, std::ilogb(ref_y[i] == 0.0f ? 1e-30f : ref_y[i]) - 7);
      identical += got_y[i] == ref_y[i];
      if (std::abs(got_y[i] - ref_y[i]) > step + float32_error) {
        ++beyond_one_step;
        MESSAGE("layer_norm bf16 y[" << row << ", " << col << "]: GPU " << got_y[i] << ", CPU " << ref_y[i]
                                     << ", |xhat * w| + |b| = " << terms);
      }
    }
    INFO("layer_norm bf16 y: " << identical << " of " << ref_y.size() << " identical");
    CHECK(beyond_one_step == 0);
    CHECK(identical >= ref_y.size() * 99 / 100);
    const ops::LayerNormGrads ref_grads = ops::layer_norm_backward(g, x, w, ref.mean, ref.rstd, true);
    const ops::LayerNormGrads got_grads =
        ops::layer_norm_backward(g.to(gpu), x.to(gpu), w.to(gpu), got.mean, got.rstd, true);
    CHECK_WITHIN(got_grads.grad_x, ref_grads.grad_x, 1e-4, "layer_norm grad_x from a bf16 gradient");
    CHECK_WITHIN(got_grads.grad_weight, ref_grads.grad_weight, 1e-4, "layer_norm grad_weight");
    CHECK_WITHIN(got_grads.grad_bias, ref_grads.grad_bias, 1e-4, "layer_norm grad_bias");
  }
  // the MLP under autocast, forward and every gradient
  manual_seed(9);
  nn::MLP mlp_cpu(96, 384, nn::Activation::QuickGelu), mlp_gpu(96, 384, nn::Activation::QuickGelu);
  {
    NoGradGuard no_grad;
    ops::copy_(mlp_cpu.fc1->bias, random_f32({384}, ++seed));
    ops::copy_(mlp_cpu.fc2->bias, random_f32({96}, ++seed));
  }
  mlp_gpu.load_state_dict(mlp_cpu.state_dict());
  mlp_gpu.to(gpu);
  const Tensor input = random_f32({2, 50, 96}, ++seed), upstream = random_f32({2, 50, 96}, ++seed);
  std::vector<Tensor> results[2];
  for (int on_gpu = 0; on_gpu < 2; ++on_gpu) {
    nn::MLP& mlp = on_gpu ? mlp_gpu : mlp_cpu;
    const Device device = on_gpu ? gpu : Device::cpu();
    Tensor xi = input.to(device).clone().set_requires_grad();
    AutocastGuard autocast(DType::BFloat16);
    Tensor y = mlp.forward(xi);
    y.backward(upstream.to(device));
    results[on_gpu] = {y, xi.grad(), mlp.fc1->weight.grad(), mlp.fc1->bias.grad(), mlp.fc2->weight.grad(),
                       mlp.fc2->bias.grad()};
  }
  const char* names[] = {"MLP y", "grad x", "grad fc1.weight", "grad fc1.bias", "grad fc2.weight", "grad fc2.bias"};
  for (int i = 0; i < 6; ++i) CHECK_WITHIN(results[1][i], results[0][i], kBf16Rounding, names[i]);
}

// The text tower's attention layer (width 512, 8 heads, 77 tokens, causal, padded keys)
// under autocast, once through the GEMM path and once through the tensor-core tiles,
// which read the projections' head views in place and write [B, L, H, D] memory: the
// same function, so output and every gradient agree at the bf16 tolerance.
TEST_CASE("cuda: multi-head attention through the tensor-core tiles matches the GEMM path") {
  SKIP_WITHOUT_GPU();
  constexpr double kBf16Rounding = 2e-2;
  const Device gpu = Device::cuda(0);
  uint64_t seed = 1700;
  manual_seed(17);
  nn::MultiHeadAttention attention(512, 8);
  attention.to(gpu);
  const int64_t B = 4, L = 77;
  std::vector<int64_t> lengths = {77, 40, 1, 63}, keep(size_t(B * L), 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < lengths[size_t(b)]; ++j) keep[size_t(b * L + j)] = 1;
  const Tensor key_keep = ops::attention_key_mask(from_vector<int64_t>(keep, {B, L}).to(gpu));
  const Tensor input = random_f32({B, L, 512}, ++seed).to(gpu), upstream = random_f32({B, L, 512}, ++seed).to(gpu);
  std::vector<Tensor> results[2];
  for (int tiles = 0; tiles < 2; ++tiles) {
    ops::AttentionPathGuard path(tiles ? ops::AttentionPath::Tiles : ops::AttentionPath::Gemm);
    attention.zero_grad();
    Tensor x = input.clone().set_requires_grad();
    AutocastGuard autocast(DType::BFloat16);
    Tensor y = attention.forward(x, key_keep, /*causal=*/true);
    y.backward(upstream);
    results[tiles] = {y, x.grad(), attention.q_proj->weight.grad(), attention.k_proj->weight.grad(),
                      attention.v_proj->weight.grad(), attention.v_proj->bias.grad(),
                      attention.out_proj->weight.grad()};
  }
  const char* names[] = {"y", "grad x", "grad q_proj.weight", "grad k_proj.weight", "grad v_proj.weight",
                         "grad v_proj.bias", "grad out_proj.weight"};
  for (int i = 0; i < 7; ++i) CHECK_WITHIN(results[1][i], results[0][i], kBf16Rounding, names[i]);
}

namespace {

// Trains the tiny CLIP pair scorer (vlm::tiny_clip_config(), bench/step's --config
// tiny) on one fixed random batch with AdamW; returns the loss of every step.
std::vector<double> train_tiny_scorer(int steps, bool bf16_autocast) {
  const vlm::CLIPConfig config = vlm::tiny_clip_config();
  vlm::PairHeadConfig head;
  head.hidden_size = config.projection_dim;
  head.dropout = 0.0;  // deterministic: the two runs see the same function
  vlm::PairScorer model(config, head, /*seed=*/0);
  model.train();
  nn::AdamWOptions adam;
  adam.lr = 1e-3;  // large enough that the loss moves a lot in a few hundred steps
  nn::AdamW optimizer(nn::decay_param_groups(model, 0.01), adam);

  const int64_t lists = 4, list_size = 4, texts = lists * list_size, text_len = 16;
  const int64_t size = config.vision.image_size;
  Tensor pixels = randn({lists, 3, size, size}, 1);
  Tensor ids = ops::cast(ops::mul_scalar(rand({texts, text_len}, 2, 0, DType::Float64),
                                         static_cast<double>(config.text.vocab_size - 2)),
                         DType::Int64);
  Tensor last = ops::narrow(ids, 1, text_len - 1, 1);
  ops::fill_(last, static_cast<double>(config.text.vocab_size - 1));
  Tensor mask = ones({texts, text_len}, DType::Int64);
  Tensor gold = ops::clamp(ops::add_scalar(ops::mul_scalar(rand({lists, list_size}, 3), 4.0), 1.0), 1.0, 5.0);
  Tensor modality = ops::cast(ops::mul_scalar(rand({lists, list_size}, 5, 0, DType::Float64), 2.999), DType::Int64);

  std::optional<AutocastGuard> autocast;
  if (bf16_autocast) autocast.emplace(DType::BFloat16);
  std::vector<double> losses_seen;
  for (int step = 0; step < steps; ++step) {
    auto out = model.forward(pixels, ids, mask, list_size);
    losses::ObjectiveInputs in;
    in.scores = reshape(out.score, {lists, list_size});
    in.gold = gold;
    in.modality_logits = reshape(out.modality_logits, {lists, list_size, 3});
    in.modality_targets = modality;
    in.tie_seed = static_cast<uint64_t>(step);
    losses::ObjectiveResult result = losses::compute_objective(losses::ObjectiveWeights::combined(), in);
    optimizer.zero_grad();
    result.total.backward();
    optimizer.step();
    losses_seen.push_back(result.total_value);
  }
  return losses_seen;
}

}  // namespace

// Issue 8's target: a 200-step bf16 run's final loss within 2% of the fp32 run's (about
// 7.5 s for both runs in a Release build on 2 cores; 40 steps under AddressSanitizer,
// which is several times slower). bench/step --device cpu --config tiny --mode
// fp32|bf16 --steps 200 checks the same at the bench's own batch and lr.
#if defined(__SANITIZE_ADDRESS__)
constexpr int kTrainingSteps = 40;
#else
constexpr int kTrainingSteps = 200;
#endif
TEST_CASE("autocast training: the tiny CLIP scorer's 200-step loss tracks float32 (<= 2% final)") {
  const int steps = kTrainingSteps;
  // Attention through its GEMM path, as on the GPU: under autocast it runs in bf16 too.
  ops::AttentionPathGuard gemm(ops::AttentionPath::Gemm);
  const auto start = std::chrono::steady_clock::now();
  const std::vector<double> fp32 = train_tiny_scorer(steps, false);
  const std::vector<double> bf16_run = train_tiny_scorer(steps, true);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double first = fp32.front(), final32 = fp32.back(), final16 = bf16_run.back();
  const double relative = std::abs(final16 - final32) / std::abs(final32);
  MESSAGE("tiny scorer, " << steps << " steps: fp32 loss " << first << " -> " << final32 << ", bf16 "
                          << bf16_run.front() << " -> " << final16 << " (relative difference " << relative
                          << ", both runs " << seconds << " s)");
  for (double v : bf16_run) REQUIRE(std::isfinite(v));
  CHECK(std::abs(bf16_run.front() - first) <= 2e-2 * std::abs(first));  // same start
  CHECK(final32 < 0.8 * first);  // training moved: the comparison is not of two untrained models
  CHECK(relative <= 0.02);
}
