// nn/: module naming (Hugging Face CLIP names), strict state-dict loading, layers
// against hand-written references, float64 gradchecks of attention and a whole encoder
// layer, AdamW against torch.optim.AdamW and the formula, gradient clipping, the
// warmup + cosine schedule, and save/load through safetensors.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <limits>
#include <filesystem>
#include <numbers>

#include "autograd/api.h"
#include "autograd/gradcheck.h"
#include "nn/layers.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "nn/serialize.h"
#include "nn/transformer.h"
#include "tensor/safetensors.h"

using namespace mms;
using namespace mms::nn;
namespace fs = std::filesystem;

namespace {

TransformerConfig tiny_config() {
  TransformerConfig c;
  c.hidden_size = 4;
  c.num_heads = 2;
  c.intermediate_size = 6;
  c.num_layers = 2;
  c.activation = Activation::QuickGelu;
  return c;
}

std::vector<std::string> names_of(const NamedTensors& named) {
  std::vector<std::string> out;
  for (const auto& [n, _] : named) out.push_back(n);
  return out;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Moves LayerNorm parameters away from 1/0 so that gradchecks and round trips see them.
void perturb_all(Module& m, uint64_t seed) {
  NoGradGuard no_grad;
  uint64_t offset = 0;
  for (auto& [name, p] : m.named_parameters()) {
    Tensor noise = normal(p.shape(), 0.0, 0.3, seed, offset, p.dtype());
    offset += static_cast<uint64_t>(p.numel()) + 1;
    assign_in_place(p, ops::add(p, noise));
  }
}

struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() / ("mms_nn_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

}  // namespace

TEST_CASE("encoder parameters carry Hugging Face CLIPEncoder names, in HF order") {
  manual_seed(1);
  Encoder encoder(tiny_config());
  std::vector<std::string> names = names_of(encoder.named_parameters("encoder"));
  const std::vector<std::string> layer0 = {
      "encoder.layers.0.self_attn.k_proj.weight", "encoder.layers.0.self_attn.k_proj.bias",
      "encoder.layers.0.self_attn.v_proj.weight", "encoder.layers.0.self_attn.v_proj.bias",
      "encoder.layers.0.self_attn.q_proj.weight", "encoder.layers.0.self_attn.q_proj.bias",
      "encoder.layers.0.self_attn.out_proj.weight", "encoder.layers.0.self_attn.out_proj.bias",
      "encoder.layers.0.layer_norm1.weight", "encoder.layers.0.layer_norm1.bias",
      "encoder.layers.0.mlp.fc1.weight", "encoder.layers.0.mlp.fc1.bias",
      "encoder.layers.0.mlp.fc2.weight", "encoder.layers.0.mlp.fc2.bias",
      "encoder.layers.0.layer_norm2.weight", "encoder.layers.0.layer_norm2.bias"};
  REQUIRE(names.size() == 32);
  CHECK(std::vector<std::string>(names.begin(), names.begin() + 16) == layer0);
  CHECK(names[16] == "encoder.layers.1.self_attn.k_proj.weight");
  CHECK(names.back() == "encoder.layers.1.layer_norm2.bias");

  CHECK(encoder.tensor_at("layers.1.mlp.fc1.weight").shape() == Shape{6, 4});
  CHECK(encoder.tensor_at("layers.1.mlp.fc2.weight").shape() == Shape{4, 6});
  CHECK(encoder.module_at("layers.0.self_attn")->type_name() == "MultiHeadAttention");
  // 4 x (16 + 4) attention + 2 x 2 x 4 norms + (6*4 + 6) + (4*6 + 4) MLP, per layer.
  CHECK(encoder.num_parameters() == 2 * (4 * 20 + 16 + 30 + 28));
  CHECK(encoder.layer(1)->self_attn->q_proj->weight.same_impl(encoder.tensor_at("layers.1.self_attn.q_proj.weight")));
  for (const Tensor& p : encoder.parameters()) CHECK(p.requires_grad());

  CHECK_THROWS_WITH_AS(encoder.tensor_at("layers.2.mlp.fc1.weight"), doctest::Contains("no child module '2"), Error);
  CHECK_THROWS_WITH_AS(encoder.tensor_at("layers.0.mlp.fc1.scale"), doctest::Contains("'scale'"), Error);
}

TEST_CASE("registration rejects bad and duplicate names; buffers follow persistence") {
  Module m("Custom");
  m.register_parameter("w", zeros({2}));
  CHECK_THROWS_WITH_AS(m.register_parameter("w", zeros({2})), doctest::Contains("already registered"), Error);
  CHECK_THROWS_AS(m.register_parameter("a.b", zeros({2})), Error);
  CHECK_THROWS_AS(m.register_parameter("", zeros({2})), Error);
  m.register_buffer("position_ids", arange(0, 3), /*persistent=*/false);
  m.register_buffer("scale", full({}, 2.0));
  m.register_module("lin", std::make_shared<Linear>(2, 3, false));
  CHECK_THROWS_AS(m.register_module("lin", std::make_shared<Linear>(2, 3)), Error);
  CHECK(names_of(m.named_parameters()) == std::vector<std::string>{"w", "lin.weight"});
  CHECK(names_of(m.ordered_state_dict()) == std::vector<std::string>{"w", "scale", "lin.weight"});
  CHECK(names_of(m.named_buffers()) == std::vector<std::string>{"position_ids", "scale"});
  CHECK(!m.tensor_at("scale").requires_grad());

  // to(dtype) converts floating tensors in place (handles stay valid), not int buffers.
  Tensor w = m.tensor_at("lin.weight");
  m.to(DType::Float64);
  CHECK(w.dtype() == DType::Float64);
  CHECK(w.requires_grad());
  CHECK(m.tensor_at("position_ids").dtype() == DType::Int64);
  CHECK(m.tensor_at("scale").dtype() == DType::Float64);
}

TEST_CASE("train/eval is recursive and controls dropout") {
  auto root = std::make_shared<Module>("Root");
  auto drop = root->register_module("drop", std::make_shared<Dropout>(0.25));
  CHECK(drop->is_training());
  root->eval();
  CHECK(!drop->is_training());
  Tensor x = ones({1000});
  CHECK(drop->forward(x).same_impl(x));
  root->train();
  std::vector<float> y = drop->forward(x).to_vector<float>();
  int zeros_seen = 0;
  for (float v : y) {
    CHECK((v == 0.0f || std::abs(v - 1.0f / 0.75f) < 1e-6f));
    zeros_seen += v == 0.0f;
  }
  CHECK(zeros_seen > 180);
  CHECK(zeros_seen < 320);
}

TEST_CASE("Linear, LayerNorm and Embedding compute what they should") {
  Linear linear(3, 2);
  {
    NoGradGuard no_grad;
    assign_in_place(linear.weight, from_vector<float>({1, 2, 3, -1, 0, 1}, {2, 3}));
    assign_in_place(linear.bias, from_vector<float>({0.5f, -0.5f}, {2}));
  }
  Tensor y = linear.forward(from_vector<float>({1, 1, 1, 2, 0, -1}, {2, 3}));
  CHECK(y.to_vector<float>() == std::vector<float>{6.5f, -0.5f, -0.5f, -3.5f});
  CHECK_THROWS_WITH_AS(linear.forward(zeros({2, 4})), doctest::Contains("Linear(3 -> 2)"), Error);

  LayerNorm norm(4, 1e-5);
  std::vector<double> v = norm.forward(from_vector<double>({1, 2, 3, 4}, {1, 4}).to(DType::Float32))
                              .to_vector<double>();
  // mean 2.5, variance 1.25
  for (int i = 0; i < 4; ++i) CHECK(v[i] == doctest::Approx((i + 1 - 2.5) / std::sqrt(1.25 + 1e-5)).epsilon(1e-5));

  manual_seed(3);
  Embedding embedding(5, 3);
  Tensor rows = embedding.forward(from_vector<int64_t>({4, 0, 4}, {3}));
  CHECK(rows.shape() == Shape{3, 3});
  std::vector<float> table = embedding.weight.to_vector<float>(), got = rows.to_vector<float>();
  for (int j = 0; j < 3; ++j) {
    CHECK(got[j] == table[12 + j]);
    CHECK(got[3 + j] == table[j]);
  }
}

TEST_CASE("initialisation is seeded and CLIP-like") {
  manual_seed(42);
  Linear a(64, 64);
  manual_seed(42);
  Linear b(64, 64);
  CHECK(a.weight.to_vector<float>() == b.weight.to_vector<float>());
  Linear c(64, 64);
  CHECK(a.weight.to_vector<float>() != c.weight.to_vector<float>());
  std::vector<double> w = a.weight.to_vector<double>();
  double sum = 0, sum_sq = 0;
  for (double x : w) sum += x, sum_sq += x * x;
  const double mean = sum / w.size(), stddev = std::sqrt(sum_sq / w.size() - mean * mean);
  CHECK(std::abs(mean) < 0.002);
  CHECK(stddev == doctest::Approx(0.02).epsilon(0.05));
  for (float x : a.bias.to_vector<float>()) CHECK(x == 0.0f);
  LayerNorm norm(8);
  for (float x : norm.weight.to_vector<float>()) CHECK(x == 1.0f);
  for (float x : norm.bias.to_vector<float>()) CHECK(x == 0.0f);
}

TEST_CASE("attention matches a loop reference with padding and causal masks (float64)") {
  manual_seed(7);
  MultiHeadAttention attn(4, 2);
  attn.to(DType::Float64);
  perturb_all(attn, 99);
  const int64_t B = 2, L = 3, D = 4, H = 2, Dh = 2;
  Tensor x = normal({B, L, D}, 0, 1, 5, 0, DType::Float64);
  Tensor keep = from_vector<bool>({true, true, true, true, true, false}, {B, L});

  auto proj = [&](const std::shared_ptr<Linear>& l) { return l->forward(x).to_vector<double>(); };
  for (bool causal : {false, true}) {
    std::vector<double> q = proj(attn.q_proj), k = proj(attn.k_proj), v = proj(attn.v_proj);
    std::vector<double> merged(B * L * D, 0.0);
    std::vector<bool> kv = keep.to_vector<bool>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < L; ++i) {
          std::vector<double> s(L, -INFINITY);
          double mx = -INFINITY;
          for (int64_t j = 0; j < L; ++j) {
            if (!kv[b * L + j] || (causal && j > i)) continue;
            double dot = 0;
            for (int64_t d = 0; d < Dh; ++d) dot += q[(b * L + i) * D + h * Dh + d] * k[(b * L + j) * D + h * Dh + d];
            s[j] = dot / std::sqrt(double(Dh));
            mx = std::max(mx, s[j]);
          }
          double z = 0;
          for (int64_t j = 0; j < L; ++j) z += std::isinf(s[j]) ? 0.0 : std::exp(s[j] - mx);
          for (int64_t j = 0; j < L; ++j) {
            if (std::isinf(s[j])) continue;
            const double pij = std::exp(s[j] - mx) / z;
            for (int64_t d = 0; d < Dh; ++d) merged[(b * L + i) * D + h * Dh + d] += pij * v[(b * L + j) * D + h * Dh + d];
          }
        }
    std::vector<double> expected =
        attn.out_proj->forward(from_vector<double>(merged, {B, L, D})).to_vector<double>();
    std::vector<double> got = attn.forward(x, keep, causal).to_vector<double>();
    REQUIRE(got.size() == expected.size());
    double max_ref = 0;
    for (double e : expected) max_ref = std::max(max_ref, std::abs(e));
    for (size_t i = 0; i < got.size(); ++i) CHECK(std::abs(got[i] - expected[i]) <= 1e-12 * max_ref);
    // inference (no graph) packs the three projections' outputs instead of stacking the
    // weights: the same function
    NoGradGuard no_grad;
    const std::vector<double> inference = attn.forward(x, keep, causal).to_vector<double>();
    for (size_t i = 0; i < inference.size(); ++i) CHECK(std::abs(inference[i] - expected[i]) <= 1e-12 * max_ref);
  }
}

TEST_CASE("gradcheck: attention module and encoder layer in float64, all parameters") {
  for (const char* act : {"quick_gelu", "gelu", "gelu_new"}) {
    INFO(act);
    TransformerConfig c = tiny_config();
    c.activation = parse_activation(act);
    manual_seed(11);
    EncoderLayer layer(c);
    layer.to(DType::Float64);
    perturb_all(layer, 5);
    Tensor x = normal({2, 3, 4}, 0, 1, 21, 0, DType::Float64).set_requires_grad(true);
    Tensor keep = from_vector<int64_t>({1, 1, 0, 1, 1, 1}, {2, 3});
    std::vector<Tensor> inputs = {x};
    for (const Tensor& p : layer.parameters()) inputs.push_back(p);
    for (bool causal : {false, true}) {
      GradcheckResult r = gradcheck(
          [&](const std::vector<Tensor>& in) { return layer.forward(in[0], keep, causal); }, inputs);
      INFO(r.message);
      CHECK(r.ok);
    }
  }

  manual_seed(12);
  MultiHeadAttention attn(6, 3);
  attn.to(DType::Float64);
  perturb_all(attn, 8);
  Tensor x = normal({1, 4, 6}, 0, 1, 22, 0, DType::Float64).set_requires_grad(true);
  std::vector<Tensor> inputs = {x};
  for (const Tensor& p : attn.parameters()) inputs.push_back(p);
  GradcheckResult r = gradcheck([&](const std::vector<Tensor>& in) { return attn.forward(in[0], Tensor(), true); },
                                inputs);
  INFO(r.message);
  CHECK(r.ok);
}

TEST_CASE("encoder forward_all returns every hidden state; unknown activations are named") {
  manual_seed(2);
  Encoder encoder(tiny_config());
  Tensor x = normal({1, 3, 4}, 0, 1, 3, 0);
  std::vector<Tensor> states = encoder.forward_all(x);
  REQUIRE(states.size() == 3);
  CHECK(states[0].same_impl(x));
  CHECK(states[2].to_vector<float>() == encoder.forward(x).to_vector<float>());
  CHECK(states[1].to_vector<float>() == encoder.layer(0)->forward(x).to_vector<float>());
  CHECK_THROWS_WITH_AS(parse_activation("swish"), doctest::Contains("unknown hidden_act 'swish'"), Error);
}

TEST_CASE("load_state_dict lists missing, unexpected and mismatched names together") {
  manual_seed(4);
  Encoder encoder(tiny_config());
  StateDict state = encoder.state_dict();
  state.erase("layers.0.mlp.fc1.bias");
  state.erase("layers.1.layer_norm2.weight");
  state["layers.0.mlp.fc3.weight"] = zeros({2});
  state["layers.1.self_attn.q_proj.weight"] = zeros({4, 5});
  const Tensor before = encoder.tensor_at("layers.0.mlp.fc2.weight").clone();
  state["layers.0.mlp.fc2.weight"] = zeros({4, 6});  // valid, but must not be written

  std::string message = error_of([&] { encoder.load_state_dict(state); });
  CHECK(contains(message, "missing (2):\n    layers.0.mlp.fc1.bias\n    layers.1.layer_norm2.weight"));
  CHECK(contains(message, "unexpected (1):\n    layers.0.mlp.fc3.weight"));
  CHECK(contains(message, "shape or dtype mismatch (1):\n    layers.1.self_attn.q_proj.weight (module [4, 4], state [4, 5])"));
  CHECK(encoder.tensor_at("layers.0.mlp.fc2.weight").to_vector<float>() == before.to_vector<float>());

  // Non-strict still refuses shape mismatches...
  CHECK(contains(error_of([&] { encoder.load_state_dict(state, false); }), "shape or dtype mismatch"));
  // ...and otherwise reports what it skipped.
  state.erase("layers.1.self_attn.q_proj.weight");
  LoadResult r = encoder.load_state_dict(state, false);
  CHECK(r.missing == std::vector<std::string>{"layers.0.mlp.fc1.bias", "layers.1.layer_norm2.weight",
                                              "layers.1.self_attn.q_proj.weight"});
  CHECK(r.unexpected == std::vector<std::string>{"layers.0.mlp.fc3.weight"});
  for (float v : encoder.tensor_at("layers.0.mlp.fc2.weight").to_vector<float>()) CHECK(v == 0.0f);

  // Values convert to the module's dtype; handles keep pointing at the module's tensors.
  Linear lin(2, 2);
  Tensor handle = lin.weight;
  lin.load_state_dict({{"weight", from_vector<double>({1, 2, 3, 4}, {2, 2})}, {"bias", zeros({2}, DType::Float64)}});
  CHECK(handle.dtype() == DType::Float32);
  CHECK(handle.to_vector<float>() == std::vector<float>{1, 2, 3, 4});
  // ...but integer bytes are never read as weights: the kind of the dtype must match.
  const std::string kind = error_of([&] {
    lin.load_state_dict({{"weight", from_vector<int32_t>({9, 9, 9, 9}, {2, 2})}, {"bias", zeros({2})}});
  });
  CHECK(contains(kind, "shape or dtype mismatch (1):\n    weight (module float32, state int32)"));
  CHECK(handle.to_vector<float>() == std::vector<float>{1, 2, 3, 4});
}

TEST_CASE("AdamW matches torch.optim.AdamW (float64) and the formula, with and without decay") {
  // Literals: torch.optim.AdamW(lr=0.1, betas=(0.9, 0.999), eps=1e-8) in float64, two
  // steps with gradients g1, g2 below.
  const std::vector<double> g1 = {0.5, -0.1, 0.0}, g2 = {-0.3, 0.2, 1e-3};
  struct Expected {
    double wd;
    std::vector<double> after1, after2;
  };
  const std::vector<Expected> cases = {
      {0.0, {0.900000002, -1.900000009999999, 0.5}, {0.8808501989417752, -1.9366103603884888, 0.4255873697336899}},
      {0.1, {0.890000002, -1.880000009999999, 0.495}, {0.8619501989217752, -1.8978103602884888, 0.41563736973368987}},
  };
  for (const Expected& e : cases) {
    INFO("weight decay ", e.wd);
    Tensor p = from_vector<double>({1.0, -2.0, 0.5}, {3}).set_requires_grad(true);
    AdamW opt({ParamGroup{"all", {{"p", p}}, e.wd, 1.0}}, AdamWOptions{0.1, 0.9, 0.999, 1e-8});

    // The formula, in double, written out independently of the kernel.
    std::vector<double> ref = {1.0, -2.0, 0.5}, m(3, 0.0), v(3, 0.0);
    int t = 0;
    for (const auto* g : {&g1, &g2}) {
      ++t;
      for (int i = 0; i < 3; ++i) {
        m[i] = 0.9 * m[i] + 0.1 * (*g)[i];
        v[i] = 0.999 * v[i] + 0.001 * (*g)[i] * (*g)[i];
        const double m_hat = m[i] / (1 - std::pow(0.9, t)), v_hat = v[i] / (1 - std::pow(0.999, t));
        ref[i] = ref[i] * (1 - 0.1 * e.wd) - 0.1 * m_hat / (std::sqrt(v_hat) + 1e-8);
      }
      p.set_grad(from_vector<double>(*g, {3}));
      opt.step();
      const std::vector<double>& torch_values = t == 1 ? e.after1 : e.after2;
      std::vector<double> got = p.to_vector<double>();
      for (int i = 0; i < 3; ++i) {
        CHECK(got[i] == doctest::Approx(torch_values[i]).epsilon(1e-14));
        CHECK(got[i] == doctest::Approx(ref[i]).epsilon(1e-14));
      }
    }
    CHECK(opt.state("p").step == 2);
    std::vector<double> m_got = opt.state("p").exp_avg.to_vector<double>();
    std::vector<double> v_got = opt.state("p").exp_avg_sq.to_vector<double>();
    for (int i = 0; i < 3; ++i) {
      CHECK(m_got[i] == doctest::Approx(m[i]).epsilon(1e-14));
      CHECK(v_got[i] == doctest::Approx(v[i]).epsilon(1e-14));
    }
  }
}

TEST_CASE("AdamW skips parameters without gradients and checkpoints its state") {
  Tensor a = from_vector<double>({1, 2}, {2}).set_requires_grad(true);
  Tensor b = from_vector<double>({3}, {1}).set_requires_grad(true);
  AdamW opt({ParamGroup{"g", {{"a", a}, {"b", b}}, 0.01, 1.0}}, AdamWOptions{0.05});
  a.set_grad(from_vector<double>({0.1, -0.2}, {2}));
  opt.step();
  CHECK(!opt.has_state("b"));
  CHECK(b.to_vector<double>() == std::vector<double>{3});
  b.set_grad(from_vector<double>({1.0}, {1}));
  opt.step();
  CHECK(opt.state("a").step == 2);
  CHECK(opt.state("b").step == 1);

  TempDir dir;
  save_safetensors(dir.file("optim.safetensors"), opt.state_dict());
  Tensor a2 = a.clone().set_requires_grad(true), b2 = b.clone().set_requires_grad(true);
  AdamW restored({ParamGroup{"g", {{"a", a2}, {"b", b2}}, 0.01, 1.0}}, AdamWOptions{0.05});
  restored.load_state_dict(load_safetensors(dir.file("optim.safetensors")));
  CHECK(restored.state("a").step == 2);
  for (auto* o : {&opt, &restored}) (void)o;
  a.set_grad(from_vector<double>({0.3, 0.3}, {2}));
  b.set_grad(from_vector<double>({-1.0}, {1}));
  a2.set_grad(from_vector<double>({0.3, 0.3}, {2}));
  b2.set_grad(from_vector<double>({-1.0}, {1}));
  opt.step();
  restored.step();
  CHECK(a.to_vector<double>() == a2.to_vector<double>());
  CHECK(b.to_vector<double>() == b2.to_vector<double>());

  StateDict bad = load_safetensors(dir.file("optim.safetensors"));
  bad["exp_avg.c"] = zeros({1}, DType::Float64);
  bad["exp_avg_sq.a"] = zeros({3}, DType::Float64);
  bad.erase("step.b");
  std::string message = error_of([&] { restored.load_state_dict(bad); });
  CHECK(contains(message, "unexpected: exp_avg.c"));
  CHECK(contains(message, "shape mismatch: exp_avg_sq.a"));
  CHECK(contains(message, "incomplete: b"));
  // A fractional step count, or integer moments, are not AdamW state either.
  StateDict odd = load_safetensors(dir.file("optim.safetensors"));
  odd["step.a"] = scalar_tensor(2.5, DType::Float64);
  odd["exp_avg.b"] = zeros({1}, DType::Int32);
  message = error_of([&] { restored.load_state_dict(odd); });
  CHECK(contains(message, "bad step: step.a (need one whole number >= 1)"));
  CHECK(contains(message, "dtype mismatch: exp_avg.b (moments are floating point, state int32)"));
  CHECK_THROWS_AS(AdamW({ParamGroup{"x", {{"a", a}}, 0, 1}, ParamGroup{"y", {{"a", a}}, 0, 1}}), Error);
}

TEST_CASE("AdamW capturable: device-scalar step and lr give the same updates, states and checkpoints") {
  // Two groups with different lr_scale and decay, an lr change between steps.
  auto make = [](bool capturable, Tensor& a, Tensor& b) {
    a = from_vector<double>({1, 2, -0.5}, {3}).set_requires_grad(true);
    b = from_vector<double>({3, 0.25}, {2}).set_requires_grad(true);
    AdamWOptions options{0.05};
    options.capturable = capturable;
    return AdamW({ParamGroup{"decay", {{"a", a}}, 0.01, 1.0}, ParamGroup{"head", {{"b", b}}, 0.0, 3.0}}, options);
  };
  Tensor a1, b1, a2, b2;
  AdamW plain = make(false, a1, b1);
  AdamW capturable = make(true, a2, b2);
  const std::vector<std::vector<double>> grads_a = {{0.1, -0.2, 0.3}, {0.5, 0.5, -1}, {-0.3, 0.1, 0.2}};
  const std::vector<std::vector<double>> grads_b = {{1, -1}, {0.2, 0.4}, {-2, 0.5}};
  for (size_t step = 0; step < 3; ++step) {
    if (step == 2) {
      plain.set_lr(0.02);
      capturable.set_lr(0.02);
    }
    a1.set_grad(from_vector<double>(grads_a[step], {3}));
    b1.set_grad(from_vector<double>(grads_b[step], {2}));
    a2.set_grad(from_vector<double>(grads_a[step], {3}));
    b2.set_grad(from_vector<double>(grads_b[step], {2}));
    plain.step();
    capturable.step();
    CHECK(a2.to_vector<double>() == a1.to_vector<double>());
    CHECK(b2.to_vector<double>() == b1.to_vector<double>());
  }
  CHECK(a1.to_vector<double>() != std::vector<double>{1, 2, -0.5});  // it moved
  CHECK(capturable.state("a").step == 3);
  CHECK(capturable.state("b").exp_avg_sq.to_vector<double>() == plain.state("b").exp_avg_sq.to_vector<double>());

  // A checkpoint of the capturable optimizer resumes into either kind identically.
  TempDir dir;
  save_safetensors(dir.file("optim.safetensors"), capturable.state_dict());
  Tensor a3, b3;
  AdamW resumed = make(true, a3, b3);
  ops::copy_(a3, a2.detach());
  ops::copy_(b3, b2.detach());
  resumed.load_state_dict(load_safetensors(dir.file("optim.safetensors")));
  for (AdamW* o : {&plain, &resumed}) o->set_lr(0.01);
  a1.set_grad(from_vector<double>({0.7, 0.7, 0.7}, {3}));
  b1.set_grad(from_vector<double>({0.1, -0.1}, {2}));
  a3.set_grad(from_vector<double>({0.7, 0.7, 0.7}, {3}));
  b3.set_grad(from_vector<double>({0.1, -0.1}, {2}));
  plain.step();
  resumed.step();
  CHECK(a3.to_vector<double>() == a1.to_vector<double>());
  CHECK(b3.to_vector<double>() == b1.to_vector<double>());
  CHECK(resumed.state("b").step == 4);

  // One shared count: a parameter of the first step without a gradient later is an
  // error, not a silent skip.
  a2.set_grad(from_vector<double>({0.1, 0.1, 0.1}, {3}));
  b2.set_grad(Tensor());
  CHECK(contains(error_of([&] { capturable.step(); }), "parameter 'b' has no gradient, but had one"));
}

TEST_CASE("AdamW capturable: a parameter without a gradient at the first step stays out, like the plain mode") {
  // CLIP's logit_scale is never reached by a score-head loss: it must neither block the
  // capturable optimizer nor move.
  auto make = [](bool capturable, Tensor& used, Tensor& unused) {
    used = from_vector<double>({1, -2}, {2}).set_requires_grad(true);
    unused = from_vector<double>({4.6}, {1}).set_requires_grad(true);
    AdamWOptions options{0.1};
    options.capturable = capturable;
    return AdamW({ParamGroup{"all", {{"used", used}, {"unused", unused}}, 0.01, 1.0}}, options);
  };
  Tensor u1, n1, u2, n2;
  AdamW plain = make(false, u1, n1);
  AdamW capturable = make(true, u2, n2);
  for (double g : {0.5, -0.25, 1.0}) {
    u1.set_grad(from_vector<double>({g, 2 * g}, {2}));
    u2.set_grad(from_vector<double>({g, 2 * g}, {2}));
    plain.step();
    capturable.step();
    CHECK(u2.to_vector<double>() == u1.to_vector<double>());
  }
  CHECK(u2.to_vector<double>() != std::vector<double>{1, -2});
  CHECK(n2.to_vector<double>() == std::vector<double>{4.6});
  CHECK_FALSE(capturable.has_state("unused"));
  CHECK(capturable.state("used").step == 3);
  // Joining later would need a count of its own: an error naming it.
  u2.set_grad(from_vector<double>({0.1, 0.1}, {2}));
  n2.set_grad(from_vector<double>({0.1}, {1}));
  CHECK(contains(error_of([&] { capturable.step(); }), "parameter 'unused' has a gradient, but had none"));
}

TEST_CASE("AdamW capturable: a refused step changes nothing; counts start from one consistent state") {
  // A bfloat16 parameter in the second group: refused before the first group moves.
  Tensor a = from_vector<float>({1, 2}, {2}).set_requires_grad(true);
  Tensor h = ops::cast(from_vector<float>({3}, {1}), DType::BFloat16).set_requires_grad(true);
  AdamWOptions options{0.1};
  options.capturable = true;
  AdamW refused({ParamGroup{"first", {{"a", a}}, 0.0, 1.0}, ParamGroup{"second", {{"h", h}}, 0.0, 2.0}}, options);
  a.set_grad(from_vector<float>({0.5, 0.5}, {2}));
  h.set_grad(ops::cast(from_vector<float>({0.5}, {1}), DType::BFloat16));
  CHECK(contains(error_of([&] { refused.step(); }), "parameter 'h' is bfloat16"));
  CHECK_FALSE(refused.has_state("a"));
  CHECK(a.to_vector<float>() == std::vector<float>{1, 2});

  // A checkpoint with state for a parameter that no longer gets gradients: its step stays
  // its own while the participants' count advances.
  auto make = [&](Tensor& used, Tensor& unused) {
    used = from_vector<double>({1, -1}, {2}).set_requires_grad(true);
    unused = from_vector<double>({0.5}, {1}).set_requires_grad(true);
    AdamWOptions o{0.1};
    o.capturable = true;
    return AdamW({ParamGroup{"all", {{"used", used}, {"unused", unused}}, 0.0, 1.0}}, o);
  };
  Tensor u1, n1;
  AdamW plain_all = make(u1, n1);
  for (int i = 0; i < 2; ++i) {  // both take part here: 2 steps each
    u1.set_grad(from_vector<double>({0.1, 0.2}, {2}));
    n1.set_grad(from_vector<double>({0.3}, {1}));
    plain_all.step();
  }
  const NamedTensors checkpoint = plain_all.state_dict();
  Tensor u2, n2;
  AdamW resumed = make(u2, n2);
  StateDict loaded;
  for (const auto& [name, t] : checkpoint) loaded[name] = t;
  resumed.load_state_dict(loaded);
  for (int i = 0; i < 3; ++i) {  // now only 'used' has a gradient
    u2.set_grad(from_vector<double>({0.1, 0.2}, {2}));
    resumed.step();
  }
  CHECK(resumed.state("used").step == 5);
  CHECK(resumed.state("unused").step == 2);

  // A partial checkpoint (state for one participant, none for the other) cannot share a count.
  Tensor u3, n3;
  AdamW partial = make(u3, n3);
  StateDict only_used;
  for (const auto& [name, t] : checkpoint)
    if (name.find(".used") != std::string::npos) only_used[name] = t;
  partial.load_state_dict(only_used);
  u3.set_grad(from_vector<double>({0.1, 0.2}, {2}));
  n3.set_grad(from_vector<double>({0.3}, {1}));
  CHECK(contains(error_of([&] { partial.step(); }), "differ"));
  CHECK(partial.state("used").step == 2);  // untouched by the refused step
}

TEST_CASE("decay groups: biases, norms and 1-d tensors are not decayed") {
  manual_seed(5);
  EncoderLayer layer(tiny_config());
  std::vector<ParamGroup> groups = decay_param_groups(layer, 0.2, "encoder.layers.0");
  REQUIRE(groups.size() == 2);
  CHECK(groups[0].weight_decay == 0.2);
  CHECK(groups[1].weight_decay == 0.0);
  CHECK(names_of(groups[0].params) ==
        std::vector<std::string>{"encoder.layers.0.self_attn.k_proj.weight", "encoder.layers.0.self_attn.v_proj.weight",
                                 "encoder.layers.0.self_attn.q_proj.weight", "encoder.layers.0.self_attn.out_proj.weight",
                                 "encoder.layers.0.mlp.fc1.weight", "encoder.layers.0.mlp.fc2.weight"});
  CHECK(groups[1].params.size() == 10);
  for (const auto& [name, _] : groups[1].params)
    CHECK((contains(name, "bias") || contains(name, "layer_norm")));
}

TEST_CASE("clip_grad_norm_ scales to the max norm and returns the norm before clipping") {
  Tensor a = zeros({2}).set_requires_grad(true), b = zeros({1}).set_requires_grad(true);
  Tensor none = zeros({3}).set_requires_grad(true);
  a.set_grad(from_vector<float>({3, 4}, {2}));
  b.set_grad(from_vector<float>({12}, {1}));
  CHECK(clip_grad_norm_({a, b, none}, 100.0) == doctest::Approx(13.0));
  CHECK(a.grad().to_vector<float>() == std::vector<float>{3, 4});  // under the max: untouched
  CHECK(clip_grad_norm_({a, b, none}, 6.5) == doctest::Approx(13.0));
  const double coef = 6.5 / (13.0 + 1e-6);
  CHECK(a.grad().to_vector<double>()[1] == doctest::Approx(4 * coef).epsilon(1e-6));
  CHECK(b.grad().to_vector<double>()[0] == doctest::Approx(12 * coef).epsilon(1e-6));
  CHECK(!none.grad().defined());

  // The deferred form: the norm comes back as a device (here CPU) float64 scalar.
  a.set_grad(from_vector<float>({3, 4}, {2}));
  b.set_grad(from_vector<float>({12}, {1}));
  Tensor norm = clip_grad_norm_deferred({a, b, none}, 6.5);
  CHECK(norm.dtype() == DType::Float64);
  CHECK(norm.item() == doctest::Approx(13.0));
  CHECK(a.grad().to_vector<double>()[0] == doctest::Approx(3 * coef).epsilon(1e-6));
  // A non-finite norm leaves the gradients as they were, and is returned.
  a.set_grad(from_vector<float>({std::numeric_limits<float>::infinity(), 4}, {2}));
  CHECK(std::isinf(clip_grad_norm_({a, b, none}, 6.5)));
  CHECK(a.grad().to_vector<double>()[1] == 4.0);
  a.set_grad(from_vector<float>({std::nanf(""), 4}, {2}));
  CHECK(std::isnan(clip_grad_norm_deferred({a, b}, 6.5).item()));
  CHECK(a.grad().to_vector<double>()[1] == 4.0);
  CHECK(!clip_grad_norm_deferred({none}, 1.0).defined());
}

TEST_CASE("warmup + cosine schedule values") {
  WarmupCosineSchedule s{1.0, 4, 12, 0.1};
  CHECK(s.lr(0) == doctest::Approx(0.25));
  CHECK(s.lr(1) == doctest::Approx(0.5));
  CHECK(s.lr(3) == doctest::Approx(1.0));
  CHECK(s.lr(4) == doctest::Approx(1.0));
  CHECK(s.lr(6) == doctest::Approx(0.1 + 0.9 * 0.5 * (1 + std::cos(std::numbers::pi / 4))));  // 0.868198
  CHECK(s.lr(6) == doctest::Approx(0.8681980515));
  CHECK(s.lr(8) == doctest::Approx(0.55));
  CHECK(s.lr(12) == doctest::Approx(0.1));
  CHECK(s.lr(1000) == doctest::Approx(0.1));
  WarmupCosineSchedule no_warmup{2.0, 0, 10, 0.0};
  CHECK(no_warmup.lr(0) == doctest::Approx(2.0));
  CHECK(no_warmup.lr(5) == doctest::Approx(1.0));
  CHECK_THROWS_AS((WarmupCosineSchedule{1.0, 5, 4, 0.0}.lr(0)), Error);
  CHECK_THROWS_AS((WarmupCosineSchedule{1.0, 1, 4, 2.0}.lr(0)), Error);
}

TEST_CASE("save_module / load_module round trip through safetensors") {
  TempDir dir;
  manual_seed(8);
  Encoder original(tiny_config());
  perturb_all(original, 77);
  save_module(original, dir.file("encoder.safetensors"), {{"format", "pt"}, {"config", "tiny"}});

  manual_seed(9);
  Encoder copy(tiny_config());
  std::map<std::string, std::string> meta = load_module(copy, dir.file("encoder.safetensors"));
  CHECK(meta.at("config") == "tiny");
  for (const auto& [name, p] : original.named_parameters()) {
    INFO(name);
    CHECK(copy.tensor_at(name).to_vector<float>() == p.to_vector<float>());
    CHECK(!copy.tensor_at(name).storage()->read_only());  // copied out of the mapping
  }
  Tensor x = normal({2, 3, 4}, 0, 1, 1, 0);
  CHECK(copy.forward(x).to_vector<float>() == original.forward(x).to_vector<float>());

  // A checkpoint directory works too, and a float64 module loads float32 weights.
  fs::rename(dir.file("encoder.safetensors"), dir.file("model.safetensors"));
  Encoder wide(tiny_config());
  wide.to(DType::Float64);
  load_module(wide, dir.path.string());
  CHECK(wide.tensor_at("layers.1.mlp.fc2.bias").to_vector<double>() ==
        original.tensor_at("layers.1.mlp.fc2.bias").to_vector<double>());

  TransformerConfig other = tiny_config();
  other.num_layers = 3;
  Encoder deeper(other);
  std::string message = error_of([&] { load_module(deeper, dir.path.string()); });
  CHECK(contains(message, dir.path.string()));
  CHECK(contains(message, "missing (16)"));
}

TEST_CASE("nn::Encoder matches transformers' CLIPEncoder in float64, forward and backward") {
  // Fixtures from tools/make_nn_fixtures.py (HF CLIPEncoder, sdpa, float64).
  for (const char* act : {"quick_gelu", "gelu"}) {
    INFO(act);
    const std::string path = std::string(MMS_SOURCE_DIR) + "/tests/fixtures/nn/encoder_" + act + ".safetensors";
    SafetensorsContents f = load_safetensors_with_metadata(path);
    REQUIRE(f.metadata.at("hidden_act") == act);
    TransformerConfig c;
    c.hidden_size = 8;
    c.num_heads = 2;
    c.intermediate_size = 16;
    c.num_layers = 2;
    c.activation = parse_activation(act);
    Encoder encoder(c);
    encoder.to(DType::Float64);
    StateDict weights;
    for (const auto& [name, t] : f.tensors)
      if (name.rfind("param.", 0) == 0) weights[name.substr(6)] = t;
    encoder.load_state_dict(weights);  // strict: the HF names match exactly

    Tensor x = f.tensors.at("x").clone().set_requires_grad(true);
    Tensor y = encoder.forward(x, f.tensors.at("key_keep"), /*causal=*/true);
    sum(mul(y, f.tensors.at("upstream"))).backward();

    // Relative to max |ref| of each tensor; a gradient that is zero in exact arithmetic
    // (k_proj.bias: softmax ignores a shift shared by all keys) is compared against the
    // largest gradient instead, so rounding noise on both sides is not "validated".
    double max_grad = 0;
    for (const auto& [name, t] : f.tensors)
      if (name.rfind("grad.", 0) == 0)
        for (double v : t.to_vector<double>()) max_grad = std::max(max_grad, std::abs(v));
    auto check_close = [&](const std::string& what, const Tensor& got, const Tensor& ref) {
      INFO(what);
      REQUIRE(got.defined());
      REQUIRE(got.shape() == ref.shape());
      std::vector<double> a = got.to_vector<double>(), b = ref.to_vector<double>();
      double scale = 0, err = 0;
      for (size_t i = 0; i < a.size(); ++i) {
        scale = std::max(scale, std::abs(b[i]));
        err = std::max(err, std::abs(a[i] - b[i]));
      }
      if (what.find("k_proj.bias") != std::string::npos) scale = max_grad;
      CHECK(scale > 0);
      CHECK(err <= 1e-12 * scale);
    };
    check_close("y", y, f.tensors.at("y"));
    check_close("grad.x", x.grad(), f.tensors.at("grad.x"));
    for (const auto& [name, p] : encoder.named_parameters()) check_close("grad." + name, p.grad(), f.tensors.at("grad." + name));
  }
}
