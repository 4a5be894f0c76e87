// preprocess: one image through CLIP preprocessing, written as safetensors.
//
//   preprocess --image F [--size 224] [--alpha composite|drop] --out OUT.safetensors
//
// OUT holds `pixel_values` float32 [1, 3, S, S], identical to transformers'
// CLIPImageProcessor (PIL path) output for PNG inputs.
#include <CLI/CLI.hpp>
#include <iostream>

#include "data/clip_preprocess.h"
#include "data/image.h"
#include "tensor/error.h"
#include "tensor/safetensors.h"
#include "tensor/tensor.h"

namespace {

// clip_preprocess_file() cannot be used: it decodes with the default alpha mode, and
// --alpha drop needs the other. Its pipeline errors (an aspect ratio too extreme for
// the resize, ...) know no file name, so add it here as clip_preprocess_file does.
std::vector<float> preprocess_pixels(const mms::data::ImageU8& rgb, const std::string& path,
                                     const mms::data::ClipImageConfig& config) {
  try {
    return mms::data::clip_preprocess(rgb, config);
  } catch (const mms::Error& e) {
    mms::fail("image: ", path, ": ", e.what());
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"CLIP image preprocessing to safetensors (pixel_values [1, 3, S, S])"};
  std::string image_path, out_path, alpha = "composite";
  int64_t size = 224;
  app.add_option("--image", image_path, "PNG, JPEG, BMP or GIF")->required();
  app.add_option("--size", size, "shortest edge and crop side")->check(CLI::Range(int64_t{1}, int64_t{4096}));
  app.add_option("--alpha", alpha, "transparency: composite on white (transformers) or drop (PIL convert)")
      ->check(CLI::IsMember({"composite", "drop"}));
  app.add_option("--out", out_path, "output .safetensors")->required();
  CLI11_PARSE(app, argc, argv);
  try {
    mms::data::ClipImageConfig config;
    config.size = config.crop_size = size;
    auto mode = alpha == "drop" ? mms::data::AlphaMode::Drop : mms::data::AlphaMode::CompositeOnWhite;
    mms::data::ImageU8 rgb = mms::data::decode_image_file(image_path, mode);
    std::vector<float> pixels = preprocess_pixels(rgb, image_path, config);
    mms::Tensor tensor = mms::from_vector(pixels, {1, 3, size, size});
    const std::vector<std::pair<std::string, mms::Tensor>> tensors{{"pixel_values", tensor}};
    mms::save_safetensors(out_path, tensors,
                          {{"source", image_path}, {"size", std::to_string(size)}, {"alpha", alpha}});
    std::cout << "preprocess: " << image_path << " (" << rgb.width << "x" << rgb.height << ") -> " << out_path
              << " pixel_values [1, 3, " << size << ", " << size << "]\n";
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
