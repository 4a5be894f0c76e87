// The linear layer through cuBLASLt (cuda/gemm_lt.h): y = x W^T + b with the bias in the
// GEMM's epilogue, y = gelu_tanh(x W^T + b) with the GELU there too, and the backward's
// dW = dy^T x with db = sum of dy over rows in the same GEMM.
//  - everywhere: linear_gelu_tanh equals linear then gelu_tanh (values and float64
//    gradients), linear handles an empty in-dimension with leading dims, and
//    linear_weight_grad equals the GEMM and the row sum (float32 for bf16 operands);
//  - on a GPU (a visible skip elsewhere): CUDA vs CPU with the cuBLASLt path on and off
//    (MMS_CUBLASLT's switch), float32 (1e-4 of max |ref|, the GELU epilogue's output
//    included), TF32 (1e-3) and bf16 inputs,
//    odd sizes, leading batch dims, non-contiguous and misaligned operands, the fused
//    op's gradients, and the weight/bias gradient GEMM (outputs pre-filled with NaN, so
//    an unwritten or accumulated-into element fails).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "autograd/api.h"
#include "autograd/autocast.h"
#include "autograd/gradcheck.h"
#include "tensor/backend.h"
#include "tensor/ops.h"
#include "tensor/tensor.h"
#include "tensor/view.h"

#ifdef MMS_WITH_CUDA
#include "cuda/gemm.h"
#include "cuda/gemm_lt.h"
#endif

#include "device_test_utils.h"

using namespace mms;
using mms::testing::relative_error;

namespace {

constexpr double kF32Tolerance = 1e-4;   // DESIGN.md, relative to max |ref|
constexpr double kTf32Tolerance = 1e-3;
constexpr double kBf16Tolerance = 2e-2;
// The GELU epilogue's output is held to DESIGN.md's float32 tolerance like everything
// else. cuBLASLt does not document how it evaluates tanh; should it use a hardware
// approximation (tanh.approx, ~2^-11 relative, ~2.5e-4 of max |ref| on gelu(h)), this
// check fails on the GPU and says so: the fused GELU must then not replace the exact
// one (no tolerance is loosened to let it). The float32 test prints the error it saw.
constexpr double kGeluEpilogueTolerance = 1e-4;

Tensor random_f32(const Shape& shape, uint64_t seed) { return randn(shape, seed, 0, DType::Float32); }

struct LinearCase {
  Shape x, weight;  // x [..., in], weight [out, in]
};

// Odd sizes, a single row and column, leading batch dims, out_features a multiple of 8
// (the GELU epilogue's pre-activation needs one) and not, and a ViT-B/32 MLP block.
const std::vector<LinearCase> kCases = {
    {{1, 1}, {1, 1}},          {{7, 13}, {5, 13}},      {{3, 17, 33}, {65, 33}}, {{2, 3, 5, 9}, {8, 9}},
    {{13}, {24, 13}},          {{2, 50, 768}, {96, 768}}, {{100, 768}, {3072, 768}}, {{50, 3072}, {768, 3072}},
};

#ifdef MMS_WITH_CUDA
// Sets cuBLASLt's switch and TF32 for a scope, restoring both after.
class LtSettings {
 public:
  LtSettings(bool cublaslt, bool tf32)
      : previous_cublaslt_(cuda::cublaslt_enabled()), previous_tf32_(cuda::tf32_enabled()) {
    cuda::set_cublaslt_enabled(cublaslt);
    cuda::set_tf32_enabled(tf32);
  }
  ~LtSettings() {
    cuda::set_cublaslt_enabled(previous_cublaslt_);
    cuda::set_tf32_enabled(previous_tf32_);
  }

 private:
  bool previous_cublaslt_, previous_tf32_;
};
#else
class LtSettings {  // a CPU-only build never reaches the GPU cases
 public:
  LtSettings(bool, bool) {}
};
#endif

const Device kGpu = Device::cuda(0);
Tensor gpu(const Tensor& t) { return t.to(kGpu); }

// linear_gelu_tanh of the GPU operands against the same on the CPU: the GELU output at
// the epilogue's tolerance, the kept pre-activation at float32's.
void check_linear_gelu_against_cpu(const Tensor& x_gpu, const Tensor& w_gpu, const Tensor& b_gpu, const Tensor& x_ref,
                                   const Tensor& w_ref, const Tensor& b_ref, const std::string& what) {
  const ops::LinearGeluResult got = ops::linear_gelu_tanh(x_gpu, w_gpu, b_gpu, true);
  const ops::LinearGeluResult ref = ops::linear_gelu_tanh(x_ref, w_ref, b_ref, true);
  CHECK_WITHIN(got.y, ref.y, kGeluEpilogueTolerance, what << " linear_gelu_tanh");
  CHECK_WITHIN(got.pre_activation, ref.pre_activation, kF32Tolerance, what << " pre-activation");
}

}  // namespace

TEST_CASE("linear_gelu_tanh: equals linear then gelu_tanh, with the pre-activation on request") {
  uint64_t seed = 10;
  for (const LinearCase& c : kCases) {
    INFO("x " << shape_str(c.x) << " weight " << shape_str(c.weight));
    Tensor x = random_f32(c.x, ++seed), w = random_f32(c.weight, ++seed), b = random_f32({c.weight[0]}, ++seed);
    Tensor h = ops::linear(x, w, b);
    Tensor y = ops::unary(UnaryOp::GeluTanh, h);
    ops::LinearGeluResult kept = ops::linear_gelu_tanh(x, w, b, true);
    ops::LinearGeluResult dropped = ops::linear_gelu_tanh(x, w, b, false);
    CHECK(relative_error(kept.y, y) == 0.0);
    CHECK(relative_error(kept.pre_activation, h) == 0.0);
    CHECK(relative_error(dropped.y, y) == 0.0);
    CHECK_FALSE(dropped.pre_activation.defined());
  }
}

TEST_CASE("linear_gelu_tanh: float64 gradients by finite differences, and equal to the composed ops") {
  Tensor x = randn({2, 3, 5}, 1, 0, DType::Float64).set_requires_grad();
  Tensor w = randn({4, 5}, 2, 0, DType::Float64).set_requires_grad();
  Tensor b = randn({4}, 3, 0, DType::Float64).set_requires_grad();
  GradcheckResult result = gradcheck([](auto& in) { return linear_gelu_tanh(in[0], in[1], in[2]); }, {x, w, b});
  INFO(result.message);
  CHECK(result.ok);
  // the same gradients as gelu(linear(...), tanh) recorded as two nodes
  Tensor upstream = randn({2, 3, 4}, 4, 0, DType::Float64);
  std::vector<Tensor> grads[2];
  for (int fused = 0; fused < 2; ++fused) {
    Tensor xf = x.detach().clone().set_requires_grad(), wf = w.detach().clone().set_requires_grad();
    Tensor bf = b.detach().clone().set_requires_grad();
    Tensor y = fused ? linear_gelu_tanh(xf, wf, bf) : gelu(linear(xf, wf, bf), true);
    y.backward(upstream);
    grads[fused] = {y, xf.grad(), wf.grad(), bf.grad()};
  }
  for (int i = 0; i < 4; ++i) CHECK(relative_error(grads[1][i], grads[0][i]) <= 1e-12);
}

TEST_CASE("linear: an empty in-dimension gives the bias (or zeros) for every leading row") {
  Tensor x = zeros({3, 2, 0}), w = zeros({4, 0}), b = random_f32({4}, 5);
  Tensor y = ops::linear(x, w, b);
  CHECK(y.shape() == Shape{3, 2, 4});
  CHECK(relative_error(y, ops::expand(b, {3, 2, 4}).contiguous()) == 0.0);
  CHECK(ops::linear(x, w, Tensor()).to_vector<float>() == std::vector<float>(24, 0.0f));
}

TEST_CASE("linear_weight_grad: the weight-gradient GEMM and the bias row sum (float32 for bf16 operands)") {
  uint64_t seed = 700;
  for (const LinearCase& c : kCases) {
    const int64_t in = c.weight[1], out_features = c.weight[0];
    Tensor x = ops::reshape(random_f32(c.x, ++seed), {-1, in});
    Tensor g = random_f32({x.size(0), out_features}, ++seed);
    INFO("grad_out " << shape_str(g.shape()) << " x " << shape_str(x.shape()));
    const ops::LinearWeightGrads grads = ops::linear_weight_grad(g, x, true);
    CHECK_WITHIN(grads.weight, ops::matmul(ops::transpose(g, 0, 1), x), 1e-6, "weight");
    CHECK_WITHIN(grads.bias, ops::sum(g, {0}), 1e-6, "bias");
    CHECK_FALSE(ops::linear_weight_grad(g, x, false).bias.defined());
    // bf16 operands: float32 gradients of the rounded values, summed in float32
    Tensor gb = ops::cast(g, DType::BFloat16), xb = ops::cast(x, DType::BFloat16);
    const ops::LinearWeightGrads mixed = ops::linear_weight_grad(gb, xb, true);
    CHECK(mixed.weight.dtype() == DType::Float32);
    CHECK(mixed.bias.dtype() == DType::Float32);
    const Tensor g_rounded = ops::cast(gb, DType::Float32), x_rounded = ops::cast(xb, DType::Float32);
    CHECK_WITHIN(mixed.weight, ops::matmul(ops::transpose(g_rounded, 0, 1), x_rounded), 1e-6, "bf16 weight");
    CHECK_WITHIN(mixed.bias, ops::sum(g_rounded, {0}), 1e-6, "bf16 bias");
    CHECK_WITHIN(ops::linear_bias_grad(gb), ops::sum(g_rounded, {0}), 1e-6, "bias alone");
  }
  // no rows: both gradients are zeros of their shapes
  const ops::LinearWeightGrads empty_rows = ops::linear_weight_grad(zeros({0, 5}), zeros({0, 3}), true);
  CHECK(empty_rows.weight.shape() == Shape{5, 3});
  CHECK(empty_rows.bias.shape() == Shape{5});
  for (double v : empty_rows.weight.to_vector<double>()) CHECK(v == 0.0);
  for (double v : empty_rows.bias.to_vector<double>()) CHECK(v == 0.0);
  CHECK_THROWS_AS(ops::linear_weight_grad(zeros({4, 5}), zeros({3, 3}), true), Error);
}

TEST_CASE("cuda: linear with bias vs the CPU, cuBLASLt on and off, float32 and TF32") {
  SKIP_WITHOUT_GPU();
  double worst_gelu_fp32 = 0.0;  // the GELU epilogue's float32 error, reported at the end
  for (bool tf32 : {false, true}) {
    for (bool cublaslt : {true, false}) {
      LtSettings settings(cublaslt, tf32);
      const double tolerance = tf32 ? kTf32Tolerance : kF32Tolerance;
      uint64_t seed = tf32 ? 200 : 100;
      for (const LinearCase& c : kCases) {
        INFO("x " << shape_str(c.x) << " weight " << shape_str(c.weight) << (tf32 ? " tf32" : " fp32")
                  << (cublaslt ? " cublaslt" : " cublas + bias pass"));
        Tensor x = random_f32(c.x, ++seed), w = random_f32(c.weight, ++seed), b = random_f32({c.weight[0]}, ++seed);
        CHECK_WITHIN(ops::linear(gpu(x), gpu(w), gpu(b)), ops::linear(x, w, b), tolerance, "linear");
        const ops::LinearGeluResult got = ops::linear_gelu_tanh(gpu(x), gpu(w), gpu(b), true);
        const ops::LinearGeluResult ref = ops::linear_gelu_tanh(x, w, b, true);
        const double gelu_tolerance = std::max(tolerance, kGeluEpilogueTolerance);
        CHECK_WITHIN(got.y, ref.y, gelu_tolerance, "linear_gelu_tanh");
        CHECK_WITHIN(got.pre_activation, ref.pre_activation, tolerance, "pre-activation");
        CHECK_WITHIN(ops::linear_gelu_tanh(gpu(x), gpu(w), gpu(b), false).y, ref.y, gelu_tolerance,
                     "linear_gelu_tanh without the pre-activation");
        if (!tf32 && cublaslt) worst_gelu_fp32 = std::max(worst_gelu_fp32, relative_error(got.y, ref.y));
        // the same shape again with other data: the cached plan, new pointers
        Tensor x2 = random_f32(c.x, ++seed);
        CHECK_WITHIN(ops::linear(gpu(x2), gpu(w), gpu(b)), ops::linear(x2, w, b), tolerance, "linear, second call");
      }
    }
  }
  MESSAGE("cuBLASLt GELU epilogue, float32: worst relative error ", worst_gelu_fp32, " (tolerance ",
          kGeluEpilogueTolerance, ")");
}

TEST_CASE("cuda: the cuBLASLt path is taken when on, skipped when off, and falls back where it must") {
  SKIP_WITHOUT_GPU();
  // K and N multiples of 4 and aligned pointers: every cuBLASLt version has kernels for this
  // (odd K or N may legitimately fall back; the parity tests above cover those).
  Tensor x = gpu(random_f32({7, 16}, 300)), w = gpu(random_f32({16, 16}, 301)), b = gpu(random_f32({16}, 302));
  Tensor none;
  {
    LtSettings settings(true, false);
    Tensor out = empty({7, 16}, DType::Float32, kGpu), pre = empty({7, 16}, DType::Float32, kGpu);
    CHECK(cuda_backend().linear_epilogue(x, w, b, LinearEpilogue::Bias, out, none));
    CHECK(cuda_backend().linear_epilogue(x, w, b, LinearEpilogue::GeluTanhBias, out, pre));
    CHECK_WITHIN(out, ops::unary(UnaryOp::GeluTanh, ops::linear(x.to(Device::cpu()), w.to(Device::cpu()),
                                                                  b.to(Device::cpu()))),
                 kGeluEpilogueTolerance, "backend GELU epilogue");
    // a pre-activation needs n % 8 == 0 (cuBLASLt's leading-dimension rule): no fused path
    Tensor w5 = gpu(random_f32({5, 16}, 303)), b5 = gpu(random_f32({5}, 304));
    Tensor out5 = empty({7, 5}, DType::Float32, kGpu), pre5 = empty({7, 5}, DType::Float32, kGpu);
    CHECK_FALSE(cuda_backend().linear_epilogue(x, w5, b5, LinearEpilogue::GeluTanhBias, out5, pre5));
    // float64 has no fused path either (and no CUDA GEMM at all)
    Tensor out64 = empty({7, 16}, DType::Float64, kGpu);
    CHECK_FALSE(cuda_backend().linear_epilogue(x, w, b, LinearEpilogue::Bias, out64, none));
  }
  {
    LtSettings settings(false, false);
    Tensor out = empty({7, 16}, DType::Float32, kGpu);
    CHECK_FALSE(cuda_backend().linear_epilogue(x, w, b, LinearEpilogue::Bias, out, none));
  }
}

TEST_CASE("cuda: cuBLASLt linear with non-contiguous and misaligned operands") {
  SKIP_WITHOUT_GPU();
  for (bool cublaslt : {true, false}) {
    LtSettings settings(cublaslt, false);
    INFO("path: " << (cublaslt ? "cublaslt" : "cublas + bias pass"));
    // x as a transposed view (made contiguous by the dispatch)
    Tensor xt = random_f32({33, 9}, 400), w = random_f32({24, 33}, 401), b = random_f32({24}, 402);
    CHECK_WITHIN(ops::linear(ops::transpose(gpu(xt), 0, 1), gpu(w), gpu(b)),
                 ops::linear(ops::transpose(xt, 0, 1), w, b), kF32Tolerance, "transposed x");
    // Views that start one float into their storage: contiguous, but only 4-byte aligned,
    // so the heuristic must pick a kernel that does not assume 16-byte vectors.
    const int64_t k = 33, n = 24, m = 11;
    Tensor x_store = random_f32({m + 1, k}, 403), w_store = random_f32({n + 1, k}, 404);
    Tensor b_store = random_f32({n + 1}, 405);
    Tensor x_gpu = ops::narrow(gpu(x_store), 0, 1, m), w_gpu = ops::narrow(gpu(w_store), 0, 1, n);
    Tensor b_gpu = ops::narrow(gpu(b_store), 0, 1, n);
    REQUIRE(x_gpu.is_contiguous());
    Tensor x_ref = ops::narrow(x_store, 0, 1, m), w_ref = ops::narrow(w_store, 0, 1, n);
    Tensor b_ref = ops::narrow(b_store, 0, 1, n);
    CHECK_WITHIN(ops::linear(x_gpu, w_gpu, b_gpu), ops::linear(x_ref, w_ref, b_ref), kF32Tolerance, "misaligned");
    check_linear_gelu_against_cpu(x_gpu, w_gpu, b_gpu, x_ref, w_ref, b_ref, "misaligned");
  }
}

TEST_CASE("cuda: cuBLASLt linear with bf16 inputs (float32 bias, output and accumulation)") {
  SKIP_WITHOUT_GPU();
  for (bool cublaslt : {true, false}) {
    LtSettings settings(cublaslt, false);
    uint64_t seed = 500;
    for (const LinearCase& c : kCases) {
      INFO("x " << shape_str(c.x) << " weight " << shape_str(c.weight) << (cublaslt ? " cublaslt" : " cublas"));
      Tensor x = random_f32(c.x, ++seed), w = random_f32(c.weight, ++seed), b = random_f32({c.weight[0]}, ++seed);
      Tensor xb = ops::cast(x, DType::BFloat16), wb = ops::cast(w, DType::BFloat16);
      Tensor got = ops::linear(gpu(xb), gpu(wb), gpu(b));
      CHECK(got.dtype() == DType::Float32);
      // the CPU's GEMM of the same rounded inputs: only the summation order differs
      CHECK_WITHIN(got, ops::linear(xb, wb, b), kF32Tolerance, "bf16 linear vs CPU bf16");
      // and float32 on the unrounded inputs, at DESIGN.md's bf16 tolerance
      CHECK_WITHIN(got, ops::linear(x, w, b), kBf16Tolerance, "bf16 linear vs float32");
      check_linear_gelu_against_cpu(gpu(xb), gpu(wb), gpu(b), xb, wb, b, "bf16");
    }
  }
}

TEST_CASE("cuda: linear_gelu_tanh and linear gradients on the GPU match the CPU (and under autocast)") {
  SKIP_WITHOUT_GPU();
  for (bool autocast_on : {false, true}) {
    for (bool cublaslt : {true, false}) {
      LtSettings settings(cublaslt, false);
      INFO("mode: " << (autocast_on ? "autocast bf16" : "float32") << (cublaslt ? " cublaslt" : " cublas"));
      Tensor x = random_f32({2, 50, 96}, 600), w = random_f32({40, 96}, 601), b = random_f32({40}, 602);
      Tensor upstream = random_f32({2, 50, 40}, 603);
      for (bool gelu_fused : {false, true}) {
        std::vector<Tensor> results[2];
        for (int on_gpu = 0; on_gpu < 2; ++on_gpu) {
          const Device device = on_gpu ? kGpu : Device::cpu();
          Tensor xd = x.clone().to(device).set_requires_grad(), wd = w.clone().to(device).set_requires_grad();
          Tensor bd = b.clone().to(device).set_requires_grad();
          AutocastGuard autocast(autocast_on ? std::optional<DType>(DType::BFloat16) : std::nullopt);
          Tensor y = gelu_fused ? linear_gelu_tanh(xd, wd, bd) : linear(xd, wd, bd);
          y.backward(upstream.to(device));
          results[on_gpu] = {y, xd.grad(), wd.grad(), bd.grad()};
        }
        const char* names[] = {"y", "grad x", "grad w", "grad bias"};
        for (int i = 0; i < 4; ++i) {
          INFO("op: " << (gelu_fused ? "linear_gelu_tanh" : "linear"));
          // the gradients come from h (exact) and our gelu_backward; y from the epilogue
          const double tolerance = gelu_fused && i == 0 ? kGeluEpilogueTolerance : kF32Tolerance;
          CHECK_WITHIN(results[1][i], results[0][i], tolerance, names[i]);
        }
      }
    }
  }
}

TEST_CASE("cuda: the weight gradient with the bias gradient in its epilogue matches the CPU") {
  SKIP_WITHOUT_GPU();
  struct Mode { const char* name; bool tf32, bf16; double tolerance; };
  // bf16 against the CPU on the same rounded operands: only the summation order differs
  for (const Mode& mode : {Mode{"fp32", false, false, kF32Tolerance}, Mode{"tf32", true, false, kTf32Tolerance},
                           Mode{"bf16", false, true, kF32Tolerance}}) {
    for (bool cublaslt : {true, false}) {
      LtSettings settings(cublaslt, mode.tf32);
      uint64_t seed = 800;
      for (const LinearCase& c : kCases) {
        const int64_t in = c.weight[1], out_features = c.weight[0];
        Tensor x = ops::reshape(random_f32(c.x, ++seed), {-1, in});
        Tensor g = random_f32({x.size(0), out_features}, ++seed);
        // TF32 with fewer than 8 rows: dW is a sum of a few products of two TF32-rounded
        // operands, and nothing averages their rounding (a single truncated product is off
        // by up to 2^-9 relative, twice the TF32 tolerance); fp32 and bf16 test them
        if (mode.tf32 && x.size(0) < 8) continue;
        if (mode.bf16) x = ops::cast(x, DType::BFloat16), g = ops::cast(g, DType::BFloat16);
        INFO(mode.name << (cublaslt ? " cublaslt" : " cublas + reduction") << " grad_out " << shape_str(g.shape())
                       << " x " << shape_str(x.shape()));
        const ops::LinearWeightGrads ref = ops::linear_weight_grad(g, x, true);
        const ops::LinearWeightGrads got = ops::linear_weight_grad(gpu(g), gpu(x), true);
        CHECK_WITHIN(got.weight, ref.weight, mode.tolerance, "grad weight");
        CHECK_WITHIN(got.bias, ref.bias, mode.tolerance, "grad bias");
        // the backend's fused call writes every element (NaN-filled outputs) and does not accumulate
        Tensor weight_out = full({out_features, in}, std::nan(""), DType::Float32, kGpu);
        Tensor bias_out = full({out_features}, std::nan(""), DType::Float32, kGpu);
        if (cuda_backend().linear_weight_grad(gpu(g), gpu(x), weight_out, bias_out)) {
          CHECK_WITHIN(weight_out, ref.weight, mode.tolerance, "backend grad weight");
          CHECK_WITHIN(bias_out, ref.bias, mode.tolerance, "backend grad bias");
          CHECK(cublaslt);
        }
      }
    }
  }
}

TEST_CASE("cuda: the fused weight gradient is taken when on, and with misaligned operands") {
  SKIP_WITHOUT_GPU();
  // Multiples of 16 and aligned pointers: for bf16 and TF32 operands (what the training
  // modes run) cuBLASLt's BGRADB must have a kernel here, or the fusion buys nothing (the
  // fallback would still be correct: the test above). Pure float32 compute may have none
  // (NVIDIA does not tabulate BGRADB's types): reported, not required.
  struct Mode { const char* name; bool tf32, bf16, required; };
  for (const Mode& mode : {Mode{"bf16", false, true, true}, Mode{"tf32", true, false, true},
                           Mode{"fp32", false, false, false}}) {
    LtSettings settings(true, mode.tf32);
    INFO(mode.name << " operands");
    Tensor g = random_f32({64, 32}, 900), x = random_f32({64, 48}, 901);
    if (mode.bf16) g = ops::cast(g, DType::BFloat16), x = ops::cast(x, DType::BFloat16);
    CHECK(cuda_backend().may_fuse_linear_weight_grad(g.dtype()));
    Tensor weight_out = empty({32, 48}, DType::Float32, kGpu), bias_out = empty({32}, DType::Float32, kGpu);
    const bool fused = cuda_backend().linear_weight_grad(gpu(g), gpu(x), weight_out, bias_out);
    MESSAGE("cuBLASLt BGRADB with ", mode.name, " operands: ", fused ? "fused" : "no kernel (GEMM + row sum)");
    if (mode.required) CHECK(fused);
    // float64 operands have no fused path
    CHECK_FALSE(cuda_backend().may_fuse_linear_weight_grad(DType::Float64));
    Tensor weight64 = empty({32, 48}, DType::Float64, kGpu), bias64 = empty({32}, DType::Float64, kGpu);
    CHECK_FALSE(cuda_backend().linear_weight_grad(gpu(g.to(DType::Float64)), gpu(x.to(DType::Float64)),
                                                  weight64, bias64));
  }
  {
    LtSettings off(false, false);
    CHECK_FALSE(cuda_backend().may_fuse_linear_weight_grad(DType::BFloat16));
  }
  LtSettings settings(true, false);
  // views one element into their buffers (4 bytes for float32, 2 for bf16): contiguous
  // but less aligned, so the plan must pick kernels without 16-byte vector accesses
  for (bool bf16 : {false, true}) {
    INFO((bf16 ? "bf16 operands, misaligned" : "float32 operands, misaligned"));
    const int64_t rows = 37, out_features = 24, in = 33;
    Tensor g_store = random_f32({rows * out_features + 1}, 902), x_store = random_f32({rows * in + 1}, 903);
    if (bf16) g_store = ops::cast(g_store, DType::BFloat16), x_store = ops::cast(x_store, DType::BFloat16);
    auto view = [](const Tensor& store, int64_t r, int64_t c) { return ops::reshape(ops::narrow(store, 0, 1, r * c), {r, c}); };
    const Tensor g_gpu = view(gpu(g_store), rows, out_features), x_gpu = view(gpu(x_store), rows, in);
    REQUIRE(g_gpu.is_contiguous());
    const ops::LinearWeightGrads ref =
        ops::linear_weight_grad(view(g_store, rows, out_features), view(x_store, rows, in), true);
    const ops::LinearWeightGrads got = ops::linear_weight_grad(g_gpu, x_gpu, true);
    CHECK_WITHIN(got.weight, ref.weight, kF32Tolerance, "misaligned grad weight");
    CHECK_WITHIN(got.bias, ref.bias, kF32Tolerance, "misaligned grad bias");
  }
}
