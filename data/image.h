// 8-bit RGB images: decoding (stb_image), PNG writing (stb_image_write), and Pillow's
// bicubic resampling reproduced bit for bit.
//
// Images are plain host buffers, row-major HWC uint8: pixel (y, x) channel c lives at
// pixels[(y * width + x) * channels + c].
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mms::data {

struct ImageU8 {
  int64_t width = 0;
  int64_t height = 0;
  int64_t channels = 3;
  std::vector<uint8_t> pixels;  // [height, width, channels]

  uint8_t at(int64_t y, int64_t x, int64_t c) const { return pixels[(y * width + x) * channels + c]; }
};

// Largest side accepted from a file: hostile headers claiming huge sizes are refused
// before any allocation.
inline constexpr int64_t kMaxImageSide = 16384;

// How transparency becomes RGB.
//   CompositeOnWhite: what transformers' convert_to_rgb does (and so what CLIP's image
//     processor sees): images with an alpha channel or a transparency key are blended
//     onto opaque white with Pillow's alpha_composite integer arithmetic. Opaque pixels
//     are unchanged, so for images without alpha this equals Drop.
//   Drop: PIL's plain convert("RGB"): the alpha channel is ignored.
enum class AlphaMode { CompositeOnWhite, Drop };

// PNG, JPEG, BMP or GIF (first frame) -> RGB; grey is replicated, palettes expanded.
// Errors name the file and the reason.
ImageU8 decode_image_file(const std::string& path, AlphaMode alpha = AlphaMode::CompositeOnWhite);
// `name` only labels errors (e.g. the file the bytes came from).
ImageU8 decode_image_memory(const uint8_t* data, size_t size, const std::string& name,
                            AlphaMode alpha = AlphaMode::CompositeOnWhite);

// Pillow's Image.alpha_composite(white, rgba).convert("RGB") for one pixel.
void composite_on_white(const uint8_t rgba[4], uint8_t rgb[3]);

// Writes an RGB (3) or grey (1) or RGBA (4) image as PNG, atomically (temp + rename).
void write_png(const std::string& path, const ImageU8& image);
std::vector<uint8_t> encode_png(const ImageU8& image);

// Largest output side resize_bicubic_pillow accepts.
inline constexpr int64_t kMaxResizeSide = int64_t{1} << 20;

// Pillow's Image.resize(..., BICUBIC) on 8-bit data: a = -0.5 cubic, support widened
// by the scale factor when shrinking, separable (horizontal pass, then vertical), each
// pass in 22-bit fixed point with the intermediate rounded and clipped to uint8.
ImageU8 resize_bicubic_pillow(const ImageU8& image, int64_t out_width, int64_t out_height);

// Crops [top, top+height) x [left, left+width); the window must lie inside the image.
ImageU8 crop(const ImageU8& image, int64_t top, int64_t left, int64_t height, int64_t width);

}  // namespace mms::data
