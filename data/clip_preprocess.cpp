#include "data/clip_preprocess.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tensor/error.h"

namespace mms::data {

ClipImageConfig load_clip_image_config(const std::string& model_dir, int64_t image_size) {
  ClipImageConfig c;
  c.size = c.crop_size = image_size;
  const std::filesystem::path path = std::filesystem::path(model_dir) / "preprocessor_config.json";
  if (model_dir.empty() || !std::filesystem::exists(path)) return c;
  std::ifstream in(path);
  MMS_CHECK(in.good(), path.string(), ": cannot open");
  try {
    const nlohmann::json j = nlohmann::json::parse(in);
    if (j.contains("size")) {  // {"shortest_edge": 224} in recent files, 224 in old ones
      const auto& s = j["size"];
      c.size = s.is_object() ? s.value("shortest_edge", c.size) : s.get<int64_t>();
    }
    if (j.contains("crop_size")) {
      const auto& s = j["crop_size"];
      c.crop_size = s.is_object() ? s.value("height", c.crop_size) : s.get<int64_t>();
    }
    if (j.contains("image_mean")) c.mean = j["image_mean"].get<std::array<double, 3>>();
    if (j.contains("image_std")) c.std = j["image_std"].get<std::array<double, 3>>();
  } catch (const nlohmann::json::exception& e) {
    fail(path.string(), ": ", e.what());
  }
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
  return clip_preprocess(decode_image_file(path), config);
}

}  // namespace mms::data
