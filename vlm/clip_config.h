// CLIP configuration, read from a Hugging Face config.json.
//
// The field names and defaults are transformers' CLIPTextConfig / CLIPVisionConfig /
// CLIPConfig class defaults (openai/clip-vit-base-patch32 sizes), so a config.json that
// leaves a key out means what it means to transformers. Parsing follows
// CLIPConfig.__post_init__: `text_config` / `vision_config`, or the legacy
// `text_config_dict` / `vision_config_dict`, which win when present (transformers fills
// them with class defaults and lets every one of their values override text_config).
//
// Pooling rule (CLIPTextModel.forward): eos_token_id == 2 marks the old configs whose
// eos id was wrong, and then the pooled token is argmax(input_ids) (the eot token has
// the largest id); any other value pools the first position equal to eos_token_id.
// A config without eos_token_id gets the class default 49407 (first-eos pooling).
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "nn/activation.h"

namespace mms::vlm {

struct CLIPTextConfig {
  int64_t vocab_size = 49408;
  int64_t hidden_size = 512;
  int64_t intermediate_size = 2048;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 8;
  int64_t max_position_embeddings = 77;
  std::string hidden_act = "quick_gelu";
  double layer_norm_eps = 1e-5;
  int64_t pad_token_id = 1;
  int64_t bos_token_id = 49406;
  int64_t eos_token_id = 49407;

  bool pools_by_argmax() const { return eos_token_id == 2; }
};

struct CLIPVisionConfig {
  int64_t hidden_size = 768;
  int64_t intermediate_size = 3072;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t num_channels = 3;
  int64_t image_size = 224;
  int64_t patch_size = 32;
  std::string hidden_act = "quick_gelu";
  double layer_norm_eps = 1e-5;

  int64_t grid() const { return image_size / patch_size; }          // patches per side
  int64_t num_positions() const { return grid() * grid() + 1; }     // + class token
};

struct CLIPConfig {
  CLIPTextConfig text;
  CLIPVisionConfig vision;
  int64_t projection_dim = 512;
  double logit_scale_init_value = 2.6592;
};

// `source` names the file in error messages. Throws mms::Error on a wrong type, an
// unknown hidden_act, or inconsistent sizes (hidden_size not divisible by heads, ...).
CLIPConfig parse_clip_config(const nlohmann::json& json, const std::string& source = "config.json");
// `path` is a config.json or a directory holding one.
CLIPConfig load_clip_config(const std::string& path);
// Writes the modern layout (text_config / vision_config), every field explicit.
nlohmann::json clip_config_to_json(const CLIPConfig& config);
void save_clip_config(const CLIPConfig& config, const std::string& path);

// A small configuration for tests and the synthetic default (seconds on a CPU).
CLIPConfig tiny_clip_config();

}  // namespace mms::vlm
