#include "vlm/clip_config.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "tensor/error.h"

namespace mms::vlm {

namespace {

using nlohmann::json;

// Reads obj[key] into `out` when present (and not null); a value of the wrong type is
// an error naming the file, the section and the key.
void read_int(const json& obj, const char* key, int64_t& out, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return;
  // Whole numbers only, and only those an int64 holds: a cast of 1e300 (or of an unsigned
  // value past 2^63) would be undefined or wrap, and read as some other size.
  constexpr double kLimit = 9007199254740992.0;  // 2^53: every whole double below is exact
  if (it->is_number_unsigned()) {
    MMS_CHECK(it->get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX), where, ".", key,
              ": out of range, got ", it->dump());
    out = static_cast<int64_t>(it->get<uint64_t>());
  } else if (it->is_number_integer()) {
    out = it->get<int64_t>();
  } else if (it->is_number_float() && std::floor(it->get<double>()) == it->get<double>()) {
    MMS_CHECK(std::fabs(it->get<double>()) <= kLimit, where, ".", key,
              ": out of range for a whole number written as a float (limit 2^53), got ", it->dump());
    out = static_cast<int64_t>(it->get<double>());  // 224.0 written by some tools
  } else {
    fail(where, ".", key, ": expected an integer, got ", it->dump());
  }
}

void read_double(const json& obj, const char* key, double& out, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return;
  MMS_CHECK(it->is_number(), where, ".", key, ": expected a number, got ", it->dump());
  out = it->get<double>();
}

void read_string(const json& obj, const char* key, std::string& out, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return;
  MMS_CHECK(it->is_string(), where, ".", key, ": expected a string, got ", it->dump());
  out = it->get<std::string>();
}

// image_size / patch_size may be an int or a square [h, w] pair in HF configs.
void read_square(const json& obj, const char* key, int64_t& out, const std::string& where) {
  auto it = obj.find(key);
  if (it != obj.end() && it->is_array()) {
    MMS_CHECK(it->size() == 2 && (*it)[0].is_number_integer() && (*it)[0] == (*it)[1], where, ".",
              key, ": only square sizes are supported, got ", it->dump());
    out = (*it)[0].get<int64_t>();
    return;
  }
  read_int(obj, key, out, where);
}

void check_activation(const std::string& act, const std::string& where) {
  try {
    nn::parse_activation(act);
  } catch (const Error& e) {
    fail(where, ".hidden_act: ", e.what());
  }
}

void check_positive(int64_t value, const char* key, const std::string& where) {
  MMS_CHECK(value > 0, where, ".", key, " must be positive, got ", value);
}

CLIPTextConfig parse_text(const json& obj, const std::string& where) {
  MMS_CHECK(obj.is_object(), where, ": expected an object, got ", obj.dump());
  CLIPTextConfig c;
  read_int(obj, "vocab_size", c.vocab_size, where);
  read_int(obj, "hidden_size", c.hidden_size, where);
  read_int(obj, "intermediate_size", c.intermediate_size, where);
  read_int(obj, "num_hidden_layers", c.num_hidden_layers, where);
  read_int(obj, "num_attention_heads", c.num_attention_heads, where);
  read_int(obj, "max_position_embeddings", c.max_position_embeddings, where);
  read_string(obj, "hidden_act", c.hidden_act, where);
  read_double(obj, "layer_norm_eps", c.layer_norm_eps, where);
  read_int(obj, "pad_token_id", c.pad_token_id, where);
  read_int(obj, "bos_token_id", c.bos_token_id, where);
  if (auto it = obj.find("eos_token_id"); it != obj.end() && it->is_array())
    fail(where, ".eos_token_id: a list of eos ids is not supported, got ", it->dump());
  read_int(obj, "eos_token_id", c.eos_token_id, where);

  check_positive(c.vocab_size, "vocab_size", where);
  check_positive(c.hidden_size, "hidden_size", where);
  check_positive(c.intermediate_size, "intermediate_size", where);
  check_positive(c.num_hidden_layers, "num_hidden_layers", where);
  check_positive(c.num_attention_heads, "num_attention_heads", where);
  check_positive(c.max_position_embeddings, "max_position_embeddings", where);
  MMS_CHECK(c.hidden_size % c.num_attention_heads == 0, where, ": hidden_size ", c.hidden_size,
            " is not a multiple of num_attention_heads ", c.num_attention_heads);
  MMS_CHECK(c.layer_norm_eps > 0, where, ".layer_norm_eps must be positive, got ", c.layer_norm_eps);
  check_activation(c.hidden_act, where);
  return c;
}

CLIPVisionConfig parse_vision(const json& obj, const std::string& where) {
  MMS_CHECK(obj.is_object(), where, ": expected an object, got ", obj.dump());
  CLIPVisionConfig c;
  read_int(obj, "hidden_size", c.hidden_size, where);
  read_int(obj, "intermediate_size", c.intermediate_size, where);
  read_int(obj, "num_hidden_layers", c.num_hidden_layers, where);
  read_int(obj, "num_attention_heads", c.num_attention_heads, where);
  read_int(obj, "num_channels", c.num_channels, where);
  read_square(obj, "image_size", c.image_size, where);
  read_square(obj, "patch_size", c.patch_size, where);
  read_string(obj, "hidden_act", c.hidden_act, where);
  read_double(obj, "layer_norm_eps", c.layer_norm_eps, where);

  check_positive(c.hidden_size, "hidden_size", where);
  check_positive(c.intermediate_size, "intermediate_size", where);
  check_positive(c.num_hidden_layers, "num_hidden_layers", where);
  check_positive(c.num_attention_heads, "num_attention_heads", where);
  check_positive(c.num_channels, "num_channels", where);
  check_positive(c.image_size, "image_size", where);
  check_positive(c.patch_size, "patch_size", where);
  MMS_CHECK(c.hidden_size % c.num_attention_heads == 0, where, ": hidden_size ", c.hidden_size,
            " is not a multiple of num_attention_heads ", c.num_attention_heads);
  MMS_CHECK(c.image_size % c.patch_size == 0, where, ": image_size ", c.image_size,
            " is not a multiple of patch_size ", c.patch_size);
  MMS_CHECK(c.layer_norm_eps > 0, where, ".layer_norm_eps must be positive, got ", c.layer_norm_eps);
  check_activation(c.hidden_act, where);
  return c;
}

// The section a tower reads: the legacy *_config_dict wins over *_config (as in
// CLIPConfig.__post_init__); absent or null means all class defaults.
const json& section(const json& root, const char* modern, const char* legacy, std::string& where,
                    const std::string& source) {
  static const json empty = json::object();
  if (auto it = root.find(legacy); it != root.end() && !it->is_null()) {
    where = source + ": " + legacy;
    return *it;
  }
  where = source + ": " + modern;
  if (auto it = root.find(modern); it != root.end() && !it->is_null()) return *it;
  return empty;
}

}  // namespace

CLIPConfig parse_clip_config(const json& root, const std::string& source) {
  MMS_CHECK(root.is_object(), source, ": expected a JSON object at the top level");
  if (auto it = root.find("model_type"); it != root.end() && it->is_string())
    MMS_CHECK(*it == "clip", source, ": model_type is '", it->get<std::string>(),
              "', expected 'clip' (a CLIPModel checkpoint)");
  CLIPConfig c;
  std::string where;
  const json& text = section(root, "text_config", "text_config_dict", where, source);
  c.text = parse_text(text, where);
  const json& vision = section(root, "vision_config", "vision_config_dict", where, source);
  c.vision = parse_vision(vision, where);
  read_int(root, "projection_dim", c.projection_dim, source);
  read_double(root, "logit_scale_init_value", c.logit_scale_init_value, source);
  check_positive(c.projection_dim, "projection_dim", source);
  return c;
}

CLIPConfig load_clip_config(const std::string& path) {
  namespace fs = std::filesystem;
  fs::path file = path;
  if (fs::is_directory(file)) file /= "config.json";
  std::ifstream in(file);
  MMS_CHECK(in.good(), "load_clip_config: cannot open ", file.string());
  json root;
  try {
    root = json::parse(in);
  } catch (const json::exception& e) {
    fail(file.string(), ": not valid JSON: ", e.what());
  }
  return parse_clip_config(root, file.string());
}

json clip_config_to_json(const CLIPConfig& c) {
  json text = {{"vocab_size", c.text.vocab_size},
               {"hidden_size", c.text.hidden_size},
               {"intermediate_size", c.text.intermediate_size},
               {"num_hidden_layers", c.text.num_hidden_layers},
               {"num_attention_heads", c.text.num_attention_heads},
               {"max_position_embeddings", c.text.max_position_embeddings},
               {"hidden_act", c.text.hidden_act},
               {"layer_norm_eps", c.text.layer_norm_eps},
               {"pad_token_id", c.text.pad_token_id},
               {"bos_token_id", c.text.bos_token_id},
               {"eos_token_id", c.text.eos_token_id},
               {"model_type", "clip_text_model"}};
  json vision = {{"hidden_size", c.vision.hidden_size},
                 {"intermediate_size", c.vision.intermediate_size},
                 {"num_hidden_layers", c.vision.num_hidden_layers},
                 {"num_attention_heads", c.vision.num_attention_heads},
                 {"num_channels", c.vision.num_channels},
                 {"image_size", c.vision.image_size},
                 {"patch_size", c.vision.patch_size},
                 {"hidden_act", c.vision.hidden_act},
                 {"layer_norm_eps", c.vision.layer_norm_eps},
                 {"model_type", "clip_vision_model"}};
  return {{"architectures", {"CLIPModel"}},
          {"model_type", "clip"},
          {"projection_dim", c.projection_dim},
          {"logit_scale_init_value", c.logit_scale_init_value},
          {"text_config", text},
          {"vision_config", vision}};
}

void save_clip_config(const CLIPConfig& config, const std::string& path) {
  // temp file + rename, so a crash never leaves a half-written config.json
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    MMS_CHECK(out.good(), "save_clip_config: cannot write ", tmp);
    out << clip_config_to_json(config).dump(2) << "\n";
    MMS_CHECK(out.good(), "save_clip_config: write failed for ", tmp);
  }
  MMS_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "save_clip_config: cannot rename ", tmp,
            " to ", path);
}

CLIPConfig tiny_clip_config() {
  CLIPConfig c;
  c.text.vocab_size = 49408;  // the real CLIP BPE vocabulary, so real token ids fit
  c.text.hidden_size = 64;
  c.text.intermediate_size = 128;
  c.text.num_hidden_layers = 2;
  c.text.num_attention_heads = 4;
  c.text.max_position_embeddings = 77;
  c.vision.hidden_size = 64;
  c.vision.intermediate_size = 128;
  c.vision.num_hidden_layers = 2;
  c.vision.num_attention_heads = 4;
  c.vision.image_size = 224;
  c.vision.patch_size = 32;
  c.projection_dim = 64;
  return c;
}

}  // namespace mms::vlm
