// CLIP image preprocessing, identical to transformers' CLIPImageProcessorPil:
//   shortest edge -> size with Pillow bicubic (long side int(size * long / short)),
//   center crop crop_size x crop_size at floor offsets, x / 255, (x - mean) / std in
//   float32 (numpy's order of operations), laid out CHW.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/image.h"

namespace mms::data {

struct ClipImageConfig {
  int64_t size = 224;       // shortest edge after the resize
  int64_t crop_size = 224;  // side of the square center crop (<= size)
  std::array<double, 3> mean{0.48145466, 0.4578275, 0.40821073};
  std::array<double, 3> std{0.26862954, 0.26130258, 0.27577711};
};

// The settings a Hugging Face checkpoint directory's preprocessor_config.json gives
// (size: N or {shortest_edge}, crop_size: N or a square {height, width}, image_mean,
// image_std); without that file, size = crop_size = image_size with CLIP's mean/std.
// Any other setting must be what this pipeline does (do_resize / do_center_crop /
// do_rescale / do_normalize / do_convert_rgb true, resample 3, rescale_factor 1/255, a
// CLIP processor type), else it is refused naming the file and the key. The crop must
// equal image_size (the vision tower's input side); errors name the file.
ClipImageConfig load_clip_image_config(const std::string& model_dir, int64_t image_size);

// (width, height) after the shortest-edge resize.
std::pair<int64_t, int64_t> shortest_edge_size(int64_t width, int64_t height, int64_t size);

// The exact uint8 stage: resize + center crop, HWC.
ImageU8 clip_resize_and_crop(const ImageU8& rgb, const ClipImageConfig& config);

// Rescale + normalise a crop_size x crop_size RGB crop into out[3 * S * S] (CHW).
void clip_normalize_chw(const ImageU8& crop, const ClipImageConfig& config, float* out);

// The whole pipeline: [3, S, S] float32, S = crop_size.
std::vector<float> clip_preprocess(const ImageU8& rgb, const ClipImageConfig& config);
// Errors name the file, including the pipeline's (e.g. an aspect ratio too extreme).
std::vector<float> clip_preprocess_file(const std::string& path, const ClipImageConfig& config);

}  // namespace mms::data
