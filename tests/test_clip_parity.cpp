// vlm/ CLIP against transformers.CLIPModel: the fixtures under tests/fixtures/clip/ are
// small random checkpoints with reference outputs and parameter gradients computed by
// transformers in float64 (tools/make_clip_fixtures.py). Variant A: quick_gelu and
// argmax pooling (eos_token_id 2); variant B: gelu and first-eos pooling.
//
// Tolerances (DESIGN.md): float64 <= 1e-9 relative to max |ref| for every output and
// every parameter gradient; float32 outputs <= 1e-4.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "tensor/backend.h"
#include "tensor/safetensors.h"
#include "vlm/clip_embed.h"

using namespace mms;

namespace {

std::string fixture_dir(const std::string& variant) {
  return std::string(MMS_SOURCE_DIR) + "/tests/fixtures/clip/" + variant;
}

// max |got - ref| / max |ref|; NaN anywhere -> +inf, so it never passes.
double relative_error(const Tensor& got, const Tensor& ref) {
  REQUIRE(got.shape() == ref.shape());
  std::vector<double> g = got.to_vector<double>(), r = ref.to_vector<double>();
  double max_ref = 0.0, max_diff = 0.0;
  for (size_t i = 0; i < r.size(); ++i) {
    if (std::isnan(g[i]) || std::isnan(r[i])) return INFINITY;
    max_ref = std::max(max_ref, std::abs(r[i]));
    max_diff = std::max(max_diff, std::abs(g[i] - r[i]));
  }
  if (max_ref == 0.0) return max_diff == 0.0 ? 0.0 : INFINITY;  // all-zero refs must match exactly
  return max_diff / max_ref;
}

double max_abs(const Tensor& t) {
  double m = 0.0;
  for (double v : t.to_vector<double>()) m = std::isnan(v) ? INFINITY : std::max(m, std::abs(v));
  return m;
}

bool has_suffix(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

struct Fixture {
  TensorMap inputs, upstream, expected;
};

Fixture load_fixture(const std::string& variant) {
  const std::string dir = fixture_dir(variant);
  return {load_safetensors(dir + "/inputs.safetensors"), load_safetensors(dir + "/upstream.safetensors"),
          load_safetensors(dir + "/expected.safetensors")};
}

void check_variant(const std::string& variant) {
  Fixture f = load_fixture(variant);
  auto model = vlm::load_clip_pretrained(fixture_dir(variant), DType::Float64);
  TensorMap got = vlm::clip_embed(*model, f.inputs, &f.upstream);

  // The same names on both sides: every output, and a gradient for every parameter.
  for (const auto& [name, _] : got) CHECK_MESSAGE(f.expected.count(name) == 1, "unexpected output ", name);
  double worst_output = 0.0, worst_grad = 0.0;
  std::string worst_output_name, worst_grad_name;
  int grads = 0;
  for (const auto& [name, ref] : f.expected) {
    INFO(variant, ": ", name);
    REQUIRE_MESSAGE(got.count(name) == 1, "missing output ", name);
    double err;
    if (has_suffix(name, "self_attn.k_proj.bias")) {
      // Exactly zero in exact arithmetic (softmax ignores a shift shared by all keys), so
      // both sides hold only rounding noise: both must be tiny on the scale of the same
      // layer's k_proj.weight gradient.
      const std::string weight = name.substr(0, name.size() - 4) + "weight";
      const double scale = max_abs(f.expected.at(weight));
      REQUIRE(scale > 0.0);
      err = std::max(max_abs(got.at(name)), max_abs(ref)) / scale;
    } else {
      err = relative_error(got.at(name), ref);
    }
    CHECK(err <= 1e-9);
    const bool is_grad = name.rfind("grad.", 0) == 0;
    grads += is_grad;
    double& worst = is_grad ? worst_grad : worst_output;
    if (err >= worst) {
      worst = err;
      (is_grad ? worst_grad_name : worst_output_name) = name;
    }
  }
  CHECK(grads == static_cast<int>(model->named_parameters().size()));
  MESSAGE(variant, " float64: worst output ", worst_output_name, " ", worst_output, "; worst gradient ",
          worst_grad_name, " ", worst_grad);
}

}  // namespace

TEST_CASE("clip parity A (quick_gelu, argmax pooling): float64 forward and backward") { check_variant("A"); }
TEST_CASE("clip parity B (gelu, first-eos pooling): float64 forward and backward") { check_variant("B"); }

// Float32 on `device`: outputs and gradients within 1e-4 of the float64 reference
// (k_proj.bias, exactly zero, on the scale of its layer's k_proj.weight gradient).
void check_float32(Device device) {
  for (const std::string variant : {"A", "B"}) {
    Fixture f = load_fixture(variant);
    auto model = vlm::load_clip_pretrained(fixture_dir(variant), DType::Float32);
    model->to(device);
    TensorMap got = vlm::clip_embed(*model, f.inputs, &f.upstream);
    int compared = 0;
    double worst_output = 0.0, worst_grad = 0.0;
    for (const auto& [name, ref] : f.expected) {
      INFO(variant, " ", device.str(), ": ", name);
      REQUIRE(got.count(name) == 1);
      CHECK(got.at(name).dtype() == DType::Float32);
      CHECK(got.at(name).device() == device);
      const bool is_grad = name.rfind("grad.", 0) == 0;
      double err;
      if (has_suffix(name, "self_attn.k_proj.bias")) {
        const std::string weight = name.substr(0, name.size() - 4) + "weight";
        err = max_abs(got.at(name)) / max_abs(f.expected.at(weight));
      } else {
        err = relative_error(got.at(name), ref);
      }
      CHECK(err <= 1e-4);
      (is_grad ? worst_grad : worst_output) = std::max(is_grad ? worst_grad : worst_output, err);
      ++compared;
    }
    CHECK(compared == static_cast<int>(f.expected.size()));
    MESSAGE(variant, " float32 on ", device.str(), ": worst output error ", worst_output, ", worst gradient error ",
            worst_grad);
  }
}

TEST_CASE("clip parity: float32 outputs and gradients within 1e-4 of the float64 reference") {
  check_float32(Device::cpu());
}

TEST_CASE("clip parity: float32 on CUDA within 1e-4 of the float64 reference") {
  if (!cuda_available()) {
    MESSAGE("skipped: no CUDA device");
    return;
  }
  check_float32(Device::cuda());
}

TEST_CASE("clip parity: the pooled token follows the config's rule") {
  // A: eos_token_id 2 -> argmax; B: eos 7 -> first 7. Row 1 pads with eos (ties).
  for (const std::string variant : {"A", "B"}) {
    Fixture f = load_fixture(variant);
    vlm::CLIPConfig config = vlm::load_clip_config(fixture_dir(variant));
    std::vector<int64_t> pos = vlm::text_pool_positions(f.inputs.at("input_ids"), config.text).to_vector<int64_t>();
    CHECK(pos == std::vector<int64_t>{9, 6, 3, 5});
  }
}

TEST_CASE("clip parity: one tower at a time gives the same numbers") {
  Fixture f = load_fixture("B");
  auto model = vlm::load_clip_pretrained(fixture_dir("B"), DType::Float64);
  TensorMap text_only = vlm::clip_embed(*model, {{"input_ids", f.inputs.at("input_ids")},
                                                 {"attention_mask", f.inputs.at("attention_mask")}});
  CHECK(text_only.count("image_embeds") == 0);
  CHECK(text_only.count("logits_per_image") == 0);
  CHECK(relative_error(text_only.at("text_embeds"), f.expected.at("text_embeds")) <= 1e-9);
  TensorMap image_only = vlm::clip_embed(*model, {{"pixel_values", f.inputs.at("pixel_values")}},
                                         nullptr);
  CHECK(relative_error(image_only.at("image_embeds"), f.expected.at("image_embeds")) <= 1e-9);
}

TEST_CASE("clip embed: bad inputs are clear errors") {
  Fixture f = load_fixture("A");
  auto model = vlm::load_clip_pretrained(fixture_dir("A"), DType::Float64);
  CHECK_THROWS_WITH_AS(vlm::clip_embed(*model, {}), doctest::Contains("neither pixel_values nor input_ids"), Error);
  TensorMap wrong_up = {{"upstream_image_embeds", zeros({2, 24}, DType::Float64)}};
  CHECK_THROWS_WITH_AS(vlm::clip_embed(*model, f.inputs, &wrong_up), doctest::Contains("upstream_image_embeds is [2, 24]"),
                       Error);
  TensorMap too_long = {{"input_ids", zeros({1, 17}, DType::Int64)}};
  CHECK_THROWS_WITH_AS(vlm::clip_embed(*model, too_long), doctest::Contains("max_position_embeddings 16"), Error);
  TensorMap bad_id = {{"input_ids", full({1, 3}, 100, DType::Int64)}};
  CHECK_THROWS_WITH_AS(vlm::clip_embed(*model, bad_id), doctest::Contains("token id 100"), Error);
  TensorMap left_padded = {{"input_ids", ones({2, 3}, DType::Int64)},
                           {"attention_mask", from_vector<int64_t>({1, 1, 1, 0, 1, 1}, {2, 3})}};
  CHECK_THROWS_WITH_AS(vlm::clip_embed(*model, left_padded), doctest::Contains("row 1 masks its first token"), Error);
  TensorMap bad_size = {{"pixel_values", zeros({1, 3, 24, 24}, DType::Float64)}};
  CHECK_THROWS_WITH_AS(vlm::clip_embed(*model, bad_size), doctest::Contains("image size"), Error);
}
