// CLIP config.json parsing: modern and legacy layouts, transformers' class defaults for
// missing keys, and clear errors naming the file and key.
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>

#include "vlm/clip_config.h"

using namespace mms;
using nlohmann::json;

TEST_CASE("clip config: the fixture written by transformers") {
  vlm::CLIPConfig c = vlm::load_clip_config(std::string(MMS_SOURCE_DIR) + "/tests/fixtures/clip/B");
  CHECK(c.text.vocab_size == 100);
  CHECK(c.text.hidden_size == 32);
  CHECK(c.text.max_position_embeddings == 16);
  CHECK(c.text.hidden_act == "gelu");
  CHECK(c.text.eos_token_id == 7);
  CHECK_FALSE(c.text.pools_by_argmax());
  CHECK(c.vision.hidden_size == 40);
  CHECK(c.vision.image_size == 32);
  CHECK(c.vision.patch_size == 8);
  CHECK(c.vision.num_positions() == 17);
  CHECK(c.vision.layer_norm_eps == doctest::Approx(1e-6));
  CHECK(c.projection_dim == 24);
  CHECK(c.logit_scale_init_value == doctest::Approx(1.7));
}

TEST_CASE("clip config: missing keys take CLIPTextConfig / CLIPVisionConfig defaults") {
  vlm::CLIPConfig c = vlm::parse_clip_config(json::parse(R"({"text_config": {"hidden_size": 64}})"));
  CHECK(c.text.hidden_size == 64);
  CHECK(c.text.vocab_size == 49408);
  CHECK(c.text.intermediate_size == 2048);
  CHECK(c.text.num_hidden_layers == 12);
  CHECK(c.text.num_attention_heads == 8);
  CHECK(c.text.max_position_embeddings == 77);
  CHECK(c.text.hidden_act == "quick_gelu");
  CHECK(c.text.eos_token_id == 49407);  // class default: first-eos pooling
  CHECK_FALSE(c.text.pools_by_argmax());
  CHECK(c.vision.hidden_size == 768);
  CHECK(c.vision.image_size == 224);
  CHECK(c.vision.patch_size == 32);
  CHECK(c.vision.num_attention_heads == 12);
  CHECK(c.projection_dim == 512);
  CHECK(c.logit_scale_init_value == doctest::Approx(2.6592));
  // An empty object or nulls mean all defaults as well.
  vlm::CLIPConfig d = vlm::parse_clip_config(json::parse(R"({"text_config": null})"));
  CHECK(d.text.hidden_size == 512);
}

TEST_CASE("clip config: legacy text_config_dict / vision_config_dict win over *_config") {
  // openai/clip-vit-base-patch32's config.json carries both; transformers uses the dicts.
  json j = json::parse(R"({
    "model_type": "clip", "projection_dim": 256,
    "text_config": {"hidden_size": 999, "num_attention_heads": 1, "eos_token_id": 5},
    "text_config_dict": {"hidden_size": 128, "num_attention_heads": 4, "eos_token_id": 2},
    "vision_config_dict": {"hidden_size": 96, "num_attention_heads": 6, "patch_size": 16,
                           "hidden_act": "gelu_new"}})");
  vlm::CLIPConfig c = vlm::parse_clip_config(j);
  CHECK(c.text.hidden_size == 128);
  CHECK(c.text.num_attention_heads == 4);
  CHECK(c.text.eos_token_id == 2);
  CHECK(c.text.pools_by_argmax());
  CHECK(c.vision.hidden_size == 96);
  CHECK(c.vision.patch_size == 16);
  CHECK(c.vision.hidden_act == "gelu_new");
  CHECK(c.projection_dim == 256);
}

TEST_CASE("clip config: round trip through clip_config_to_json") {
  vlm::CLIPConfig c = vlm::tiny_clip_config();
  c.text.eos_token_id = 2;
  c.vision.hidden_act = "gelu";
  vlm::CLIPConfig back = vlm::parse_clip_config(vlm::clip_config_to_json(c));
  CHECK(back.text.hidden_size == c.text.hidden_size);
  CHECK(back.text.eos_token_id == 2);
  CHECK(back.vision.hidden_act == "gelu");
  CHECK(back.vision.image_size == c.vision.image_size);
  CHECK(back.projection_dim == c.projection_dim);
}

TEST_CASE("clip config: clear errors") {
  CHECK_THROWS_WITH_AS(vlm::parse_clip_config(json::parse(R"({"text_config": {"hidden_act": "swish"}})"), "my.json"),
                       doctest::Contains("my.json: text_config.hidden_act: activation: unknown hidden_act 'swish'"),
                       Error);
  CHECK_THROWS_WITH_AS(vlm::parse_clip_config(json::parse(R"({"vision_config_dict": {"hidden_act": "tanh"}})")),
                       doctest::Contains("vision_config_dict.hidden_act"), Error);
  CHECK_THROWS_WITH_AS(vlm::parse_clip_config(json::parse(R"({"text_config": {"hidden_size": "big"}})")),
                       doctest::Contains("text_config.hidden_size: expected an integer"), Error);
  // Whole numbers past what an int64 holds are refused, not wrapped into another size.
  CHECK_THROWS_WITH_AS(vlm::parse_clip_config(json::parse(R"({"text_config": {"eos_token_id": 1e300}})")),
                       doctest::Contains("text_config.eos_token_id: out of range for a whole number written as a float (limit 2^53), got 1e+300"), Error);
  CHECK_THROWS_WITH_AS(vlm::parse_clip_config(json::parse(R"({"vision_config": {"hidden_size": 18446744073709551615}})")),
                       doctest::Contains("vision_config.hidden_size: out of range"), Error);
  CHECK(vlm::parse_clip_config(json::parse(R"({"text_config": {"eos_token_id": 7.0}})")).text.eos_token_id == 7);
  CHECK_THROWS_WITH_AS(
      vlm::parse_clip_config(json::parse(R"({"vision_config": {"hidden_size": 100, "num_attention_heads": 3}})")),
      doctest::Contains("not a multiple of num_attention_heads"), Error);
  CHECK_THROWS_WITH_AS(vlm::parse_clip_config(json::parse(R"({"vision_config": {"image_size": 230}})")),
                       doctest::Contains("not a multiple of patch_size"), Error);
  CHECK_THROWS_WITH_AS(vlm::parse_clip_config(json::parse(R"({"model_type": "siglip"})")),
                       doctest::Contains("model_type is 'siglip'"), Error);
  CHECK_THROWS_WITH_AS(vlm::parse_clip_config(json::parse(R"({"text_config": {"eos_token_id": [2, 3]}})")),
                       doctest::Contains("list of eos ids"), Error);
  CHECK_THROWS_WITH_AS(vlm::parse_clip_config(json::parse("[1, 2]")), doctest::Contains("JSON object"), Error);
  CHECK_THROWS_WITH_AS(vlm::load_clip_config("/nonexistent/dir/config.json"),
                       doctest::Contains("cannot open /nonexistent/dir/config.json"), Error);

  const std::string broken = (std::filesystem::temp_directory_path() / "mms_broken_config.json").string();
  {
    std::FILE* f = std::fopen(broken.c_str(), "w");
    REQUIRE(f);
    std::fputs("{\"text_config\": {", f);
    std::fclose(f);
  }
  CHECK_THROWS_WITH_AS(vlm::load_clip_config(broken), doctest::Contains("not valid JSON"), Error);
  std::filesystem::remove(broken);
}
