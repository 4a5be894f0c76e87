#include "data/clip_preprocess.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tensor/error.h"

namespace mms::data {

namespace {

// preprocessor_config.json, read key by key: every setting either matches what
// clip_preprocess implements or is refused naming the file and the key. Ignoring one
// (a fixed-shape resize, no crop, another filter) would feed the model images unlike
// those it was trained on, with no error anywhere.
class PreprocessorConfig {
 public:
  PreprocessorConfig(const nlohmann::json& j, std::string file) : j_(j), file_(std::move(file)) {}

  [[noreturn]] void fail_key(const std::string& key, const std::string& what) const {
    fail(file_, ": key '", key, "': ", what);
  }

  const nlohmann::json* get(const std::string& key) const {
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }

  int64_t positive_int(const std::string& key, const nlohmann::json& v) const {
    if (!v.is_number_integer() || v.get<int64_t>() <= 0)
      fail_key(key, concat("expected a positive integer, got ", v.dump()));
    return v.get<int64_t>();
  }

  // "size": 224 (old files) or {"shortest_edge": 224}; a {height, width} resize is another algorithm.
  void size(int64_t* out) const {
    const nlohmann::json* v = get("size");
    if (!v) return;
    if (!v->is_object()) {
      *out = positive_int("size", *v);
      return;
    }
    if (v->size() != 1 || !v->contains("shortest_edge"))
      fail_key("size",
               concat(v->dump(), " is not supported: only a shortest-edge resize, {\"shortest_edge\": N} or N"));
    *out = positive_int("size.shortest_edge", v->at("shortest_edge"));
  }

  // "crop_size": 224 or {"height": 224, "width": 224}; the crop is square.
  void crop_size(int64_t* out) const {
    const nlohmann::json* v = get("crop_size");
    if (!v) return;
    if (!v->is_object()) {
      *out = positive_int("crop_size", *v);
      return;
    }
    if (v->size() != 2 || !v->contains("height") || !v->contains("width"))
      fail_key("crop_size", concat("expected {\"height\": N, \"width\": N}, got ", v->dump()));
    const int64_t h = positive_int("crop_size.height", v->at("height"));
    const int64_t w = positive_int("crop_size.width", v->at("width"));
    if (h != w) fail_key("crop_size", concat("a non-square crop ", h, "x", w, " is not supported"));
    *out = h;
  }

  // A step clip_preprocess always performs: absent, null or true is fine, false is refused.
  void always_on(const std::string& key, const char* step) const {
    const nlohmann::json* v = get(key);
    if (!v) return;
    if (!v->is_boolean()) fail_key(key, concat("expected true or false, got ", v->dump()));
    if (!v->get<bool>()) fail_key(key, concat("false is not supported (this loader always ", step, ")"));
  }

  void equals(const std::string& key, const nlohmann::json& expected, const char* why) const {
    const nlohmann::json* v = get(key);
    if (v && *v != expected) fail_key(key, concat(v->dump(), " is not supported (", why, ")"));
  }

  void rescale_factor() const {
    const nlohmann::json* v = get("rescale_factor");
    if (!v) return;
    if (!v->is_number() || std::fabs(v->get<double>() - 1.0 / 255.0) > 1e-12)
      fail_key("rescale_factor", concat(v->dump(), " is not supported (only 1/255 = 0.00392156862745098)"));
  }

  void channels(const std::string& key, std::array<double, 3>* out, bool positive) const {
    const nlohmann::json* v = get(key);
    if (!v) return;
    if (!v->is_array() || v->size() != 3) fail_key(key, concat("expected 3 numbers (R, G, B), got ", v->dump()));
    for (size_t c = 0; c < 3; ++c) {
      const auto& x = (*v)[c];
      if (!x.is_number() || !std::isfinite(x.get<double>()) || (positive && x.get<double>() <= 0))
        fail_key(key, concat("element ", c, " must be a ", positive ? "positive " : "", "number, got ", x.dump()));
      (*out)[c] = x.get<double>();
    }
  }

  void processor_type(const std::string& key) const {
    const nlohmann::json* v = get(key);
    if (v && (!v->is_string() || v->get<std::string>().rfind("CLIP", 0) != 0))
      fail_key(key, concat(v->dump(), " is not a CLIP image processor"));
  }

  // Keys not handled above: metadata that changes nothing is skipped, and so is any
  // other key set to null or false (an operation switched off); the rest is refused.
  void no_other_keys(const std::vector<std::string>& handled) const {
    static const char* kMetadata[] = {"processor_class", "input_data_format", "return_tensors", "device",
                                      "disable_grouping"};
    for (auto it = j_.begin(); it != j_.end(); ++it) {
      const std::string& key = it.key();
      if (key.rfind('_', 0) == 0 || std::find(handled.begin(), handled.end(), key) != handled.end()) continue;
      if (std::find(std::begin(kMetadata), std::end(kMetadata), key) != std::end(kMetadata)) continue;
      if (it->is_null() || (it->is_boolean() && !it->get<bool>())) continue;
      fail_key(key, concat(it->dump(), " is not supported by this CLIP preprocessing (shortest-edge bicubic ",
                           "resize, square center crop, x/255, mean/std normalise)"));
    }
  }

 private:
  const nlohmann::json& j_;
  std::string file_;
};

void read_preprocessor_config(const nlohmann::json& j, const std::string& file, ClipImageConfig& c) {
  if (!j.is_object()) fail(file, ": expected a JSON object, got ", j.type_name());
  const PreprocessorConfig config(j, file);
  config.size(&c.size);
  config.crop_size(&c.crop_size);
  config.always_on("do_resize", "resizes the shortest edge to size");
  config.always_on("do_center_crop", "center-crops to crop_size");
  config.always_on("do_rescale", "rescales by 1/255");
  config.always_on("do_normalize", "normalises with image_mean / image_std");
  config.always_on("do_convert_rgb", "converts to RGB");
  config.equals("resample", 3, "only 3, bicubic, is implemented");
  config.equals("default_to_square", false, "an integer size is the shortest edge");
  config.equals("data_format", "channels_first", "the output is CHW");
  config.rescale_factor();
  config.channels("image_mean", &c.mean, false);
  config.channels("image_std", &c.std, true);
  config.processor_type("feature_extractor_type");
  config.processor_type("image_processor_type");
  config.no_other_keys({"size", "crop_size", "do_resize", "do_center_crop", "do_rescale", "do_normalize",
                        "do_convert_rgb", "resample", "default_to_square", "data_format", "rescale_factor",
                        "image_mean", "image_std", "feature_extractor_type", "image_processor_type"});
}

}  // namespace

ClipImageConfig load_clip_image_config(const std::string& model_dir, int64_t image_size) {
  ClipImageConfig c;
  c.size = c.crop_size = image_size;
  const std::filesystem::path path = std::filesystem::path(model_dir) / "preprocessor_config.json";
  if (model_dir.empty() || !std::filesystem::exists(path)) return c;
  std::ifstream in(path);
  MMS_CHECK(in.good(), path.string(), ": cannot open");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail(path.string(), ": ", e.what());
  }
  read_preprocessor_config(j, path.string(), c);
  MMS_CHECK(c.crop_size == image_size, path.string(), ": crop_size ", c.crop_size,
            " differs from the vision config's image_size ", image_size);
  MMS_CHECK(c.size >= c.crop_size, path.string(), ": size ", c.size, " is smaller than crop_size ", c.crop_size);
  return c;
}

std::pair<int64_t, int64_t> shortest_edge_size(int64_t width, int64_t height, int64_t size) {
  MMS_CHECK(width > 0 && height > 0 && size > 0, "clip preprocess: bad sizes ", width, "x", height, " -> ", size);
  const bool portrait = width <= height;
  const int64_t short_side = portrait ? width : height, long_side = portrait ? height : width;
  // Python's int(size * long / short): a true (double) division, then truncation.
  const auto new_long = static_cast<int64_t>(static_cast<double>(size * long_side) / static_cast<double>(short_side));
  return portrait ? std::pair{size, new_long} : std::pair{new_long, size};
}

ImageU8 clip_resize_and_crop(const ImageU8& rgb, const ClipImageConfig& config) {
  MMS_CHECK(rgb.channels == 3, "clip preprocess: expected an RGB image, got ", rgb.channels, " channels");
  MMS_CHECK(config.crop_size > 0 && config.crop_size <= config.size, "clip preprocess: crop_size ",
            config.crop_size, " must be in 1..size (", config.size, ")");
  auto [w, h] = shortest_edge_size(rgb.width, rgb.height, config.size);
  // A 9000x1 strip scaled to a 128 px short side would be 1152000 px long: say why,
  // rather than letting the resize report an "invalid output size".
  MMS_CHECK(std::max(w, h) <= kMaxResizeSide, "clip preprocess: a ", rgb.width, "x", rgb.height,
            " image has too extreme an aspect ratio for a shortest-edge resize to ", config.size,
            " px: its long side would become ", std::max(w, h), " px (limit ", kMaxResizeSide, ")");
  ImageU8 resized = resize_bicubic_pillow(rgb, w, h);
  const int64_t top = (h - config.crop_size) / 2, left = (w - config.crop_size) / 2;  // floor: both >= 0
  return crop(resized, top, left, config.crop_size, config.crop_size);
}

void clip_normalize_chw(const ImageU8& image, const ClipImageConfig& config, float* out) {
  MMS_CHECK(image.channels == 3, "clip normalise: expected RGB, got ", image.channels, " channels");
  const int64_t plane = image.width * image.height;
  // transformers: float32(float64(u8) * (1/255)), then (x - float32 mean) / float32 std.
  const double rescale = 1.0 / 255.0;
  for (int64_t c = 0; c < 3; ++c) {
    const float mean = static_cast<float>(config.mean[c]);
    const float stddev = static_cast<float>(config.std[c]);
    float* dst = out + c * plane;
    for (int64_t i = 0; i < plane; ++i) {
      const float x = static_cast<float>(static_cast<double>(image.pixels[i * 3 + c]) * rescale);
      dst[i] = (x - mean) / stddev;
    }
  }
}

std::vector<float> clip_preprocess(const ImageU8& rgb, const ClipImageConfig& config) {
  ImageU8 cropped = clip_resize_and_crop(rgb, config);
  std::vector<float> out(static_cast<size_t>(3 * cropped.width * cropped.height));
  clip_normalize_chw(cropped, config, out.data());
  return out;
}

std::vector<float> clip_preprocess_file(const std::string& path, const ClipImageConfig& config) {
  const ImageU8 rgb = decode_image_file(path);  // its errors name the file already
  try {
    return clip_preprocess(rgb, config);
  } catch (const Error& e) {
    fail("image: ", path, ": ", e.what());  // the pipeline's own errors know no file name
  }
}

}  // namespace mms::data
