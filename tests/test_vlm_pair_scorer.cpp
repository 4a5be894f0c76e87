// The MM-SCALE pair scorer: fusion head formula, HF + head.* names, one-file save/load,
// loading the CLIP part from a Hugging Face directory, and the image-once/repeat rule.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>

#include "autograd/api.h"
#include "autograd/gradcheck.h"
#include "tensor/safetensors.h"
#include "vlm/pair_scorer.h"

using namespace mms;

namespace {

const std::string kFixtureA = std::string(MMS_SOURCE_DIR) + "/tests/fixtures/clip/A";

// Small and fast: the parity fixture's sizes (text 32, vision 40, projection 24).
vlm::CLIPConfig small_config() { return vlm::load_clip_config(kFixtureA); }

vlm::PairHeadConfig head_config() {
  vlm::PairHeadConfig h;
  h.hidden_size = 16;
  h.dropout = 0.1;
  return h;
}

struct Batch {
  Tensor pixels, ids, mask;
};

// N = 2 images, K = 3 scenarios each (rows image-major), one padded scenario.
Batch make_batch(DType dtype) {
  Batch b;
  b.pixels = randn({2, 3, 32, 32}, 7, 0, dtype);
  std::vector<int64_t> ids(6 * 5), mask(6 * 5, 1);
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t i = 0; i < 5; ++i) ids[r * 5 + i] = i == 0 ? 1 : (i == 4 ? 99 : 3 + (r * 7 + i * 11) % 90);
  ids[4 * 5 + 2] = 99;  // row 4: eos at 2, then padding
  ids[4 * 5 + 3] = ids[4 * 5 + 4] = 0;
  mask[4 * 5 + 3] = mask[4 * 5 + 4] = 0;
  b.ids = from_vector(ids, {6, 5});
  b.mask = from_vector(mask, {6, 5});
  return b;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double m = 0.0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

}  // namespace

TEST_CASE("pair scorer: parameter names are HF's for CLIP and head.* for the rest") {
  vlm::PairScorer model(small_config(), head_config(), 3);
  nn::StateDict state = model.state_dict();
  CHECK(state.count("logit_scale") == 1);
  CHECK(state.at("logit_scale").dim() == 0);
  CHECK(state.count("vision_model.embeddings.patch_embedding.weight") == 1);
  CHECK(state.at("vision_model.embeddings.patch_embedding.weight").shape() == Shape{40, 3, 8, 8});
  CHECK(state.count("vision_model.pre_layrnorm.weight") == 1);
  CHECK(state.count("text_model.encoder.layers.1.self_attn.q_proj.weight") == 1);
  CHECK(state.count("text_model.final_layer_norm.bias") == 1);
  CHECK(state.count("visual_projection.bias") == 0);
  CHECK(state.at("head.fusion.weight").shape() == Shape{16, 3 * 24});
  CHECK(state.at("head.score.weight").shape() == Shape{1, 16});
  CHECK(state.at("head.modality.weight").shape() == Shape{3, 16});
  int head = 0;
  for (const auto& [name, _] : state) head += name.rfind("head.", 0) == 0;
  CHECK(head == 6);
  // The CLIP names are exactly those of the transformers checkpoint.
  TensorMap hf = load_safetensors(kFixtureA + "/model.safetensors");
  CHECK(state.size() == hf.size() + 6);
  for (const auto& [name, t] : hf) {
    INFO(name);
    REQUIRE(state.count(name) == 1);
    CHECK(state.at(name).shape() == t.shape());
  }
}

TEST_CASE("pair scorer: score in (1, 5), modality logits, image tower once per image") {
  vlm::PairScorer model(small_config(), head_config(), 11);
  model.to(DType::Float64);
  model.eval();
  Batch b = make_batch(DType::Float64);
  auto out = model.forward(b.pixels, b.ids, b.mask, 3);
  REQUIRE(out.score.shape() == Shape{6});
  REQUIRE(out.modality_logits.shape() == Shape{6, 3});
  CHECK(out.image_embeds.shape() == Shape{2, 24});
  CHECK(out.text_embeds.shape() == Shape{6, 24});
  std::vector<double> scores = out.score.to_vector<double>(), logits = out.score_logit.to_vector<double>();
  for (size_t i = 0; i < scores.size(); ++i) {
    CHECK(scores[i] > 1.0);
    CHECK(scores[i] < 5.0);
    CHECK(scores[i] == doctest::Approx(1.0 + 4.0 / (1.0 + std::exp(-logits[i]))).epsilon(1e-14));
  }
  // Same as running the head on explicitly paired rows (image n for rows n*K..n*K+K-1).
  Tensor paired = index_select(out.image_embeds, 0, from_vector<int64_t>({0, 0, 0, 1, 1, 1}, {6}));
  auto head_out = model.head->forward(paired, out.text_embeds);
  CHECK(max_abs_diff(head_out.score, out.score) == 0.0);
  CHECK(max_abs_diff(head_out.modality_logits, out.modality_logits) == 0.0);
  // The embeddings are CLIP's.
  CHECK(max_abs_diff(out.image_embeds, model.encode_image(b.pixels)) == 0.0);

  CHECK_THROWS_WITH_AS(model.forward(b.pixels, b.ids, b.mask, 2), doctest::Contains("K = 2"), Error);
}

TEST_CASE("pair scorer: head gradients match finite differences (float64)") {
  vlm::PairHead head(5, head_config(), 2);
  head.to(DType::Float64);
  head.eval();  // dropout off: the function must be deterministic
  Tensor image = randn({4, 5}, 1, 0, DType::Float64).set_requires_grad();
  Tensor text = randn({4, 5}, 2, 0, DType::Float64).set_requires_grad();
  std::vector<Tensor> inputs = {image, text};
  for (const auto& [_, p] : head.named_parameters()) inputs.push_back(p);
  auto f = [&](const std::vector<Tensor>& x) {
    auto o = head.forward(x[0], x[1]);
    return cat({unsqueeze(o.score, 1), o.modality_logits}, 1);
  };
  GradcheckResult r = gradcheck(f, inputs);
  CHECK_MESSAGE(r.ok, r.message);
}

TEST_CASE("pair scorer: the image gradient sums over its scenarios") {
  vlm::PairScorer model(small_config(), head_config(), 5);
  model.to(DType::Float64);
  model.eval();
  Batch b = make_batch(DType::Float64);
  // Through the scorer ...
  auto out = model.forward(b.pixels, b.ids, b.mask, 3);
  sum(out.score).backward();
  Tensor g_scorer = model.visual_projection->weight.grad().clone();
  model.zero_grad();
  // ... and with the image tower run on each pair's own copy of its image.
  Tensor repeated_pixels = index_select(b.pixels, 0, from_vector<int64_t>({0, 0, 0, 1, 1, 1}, {6}));
  auto h = model.head->forward(model.encode_image(repeated_pixels), model.encode_text(b.ids, b.mask));
  sum(h.score).backward();
  Tensor g_pairs = model.visual_projection->weight.grad();
  const double scale = max_abs_diff(g_pairs, zeros_like(g_pairs));
  REQUIRE(scale > 0.0);
  CHECK(max_abs_diff(g_scorer, g_pairs) <= 1e-12 * scale);
}

TEST_CASE("pair scorer: one-file save and load, CLIP part from a HF directory") {
  const std::string path = (std::filesystem::temp_directory_path() / "mms_pair_scorer_test.safetensors").string();
  auto model = vlm::pair_scorer_from_clip(kFixtureA, head_config(), 9, DType::Float32);
  model->eval();
  // The CLIP part is the checkpoint's, bit for bit.
  TensorMap hf = load_safetensors(kFixtureA + "/model.safetensors");
  for (const auto& [name, t] : hf) CHECK_MESSAGE(max_abs_diff(model->tensor_at(name), t) == 0.0, name);

  vlm::save_pair_scorer(*model, path);
  auto loaded = vlm::load_pair_scorer(path, DType::Float32);
  loaded->eval();
  CHECK(loaded->head->config.hidden_size == 16);
  CHECK(loaded->head->config.dropout == doctest::Approx(0.1));
  CHECK(loaded->config.text.eos_token_id == 2);
  Batch b = make_batch(DType::Float32);
  auto a = model->forward(b.pixels, b.ids, b.mask, 3);
  auto c = loaded->forward(b.pixels, b.ids, b.mask, 3);
  CHECK(max_abs_diff(a.score, c.score) == 0.0);
  CHECK(max_abs_diff(a.modality_logits, c.modality_logits) == 0.0);

  // A plain HF weights file is not a scorer file: the error says what to use instead.
  CHECK_THROWS_WITH_AS(vlm::load_pair_scorer(kFixtureA + "/model.safetensors"),
                       doctest::Contains("pair_scorer_from_clip"), Error);
  std::filesystem::remove(path);
}

TEST_CASE("pair scorer: seeded construction is reproducible") {
  vlm::PairScorer a(small_config(), head_config(), 42), b(small_config(), head_config(), 42),
      c(small_config(), head_config(), 43);
  CHECK(max_abs_diff(a.head->fusion->weight, b.head->fusion->weight) == 0.0);
  CHECK(max_abs_diff(a.text_model->embeddings->token_embedding->weight,
                     b.text_model->embeddings->token_embedding->weight) == 0.0);
  CHECK(max_abs_diff(a.head->fusion->weight, c.head->fusion->weight) > 0.0);
  // HF-style init: LayerNorm 1/0, logit_scale from the config.
  CHECK(a.vision_model->pre_layrnorm->weight.to_vector<float>()[0] == 1.0f);
  CHECK(a.logit_scale.item() == doctest::Approx(1.7));
}
