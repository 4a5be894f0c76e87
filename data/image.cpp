#include "data/image.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "tensor/error.h"

// stb is compiled here, with static linkage so no other translation unit can clash
// with it, and restricted to the formats we accept.
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_ONLY_GIF
#define STBI_NO_STDIO
#define STBI_MAX_DIMENSIONS 16384
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#endif
#include <stb_image.h>
#include <stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace mms::data {

namespace fs = std::filesystem;

void composite_on_white(const uint8_t rgba[4], uint8_t rgb[3]) {
  // Pillow's AlphaComposite.c with dst = (255, 255, 255, 255): outa255 = 255 * 255, so
  // coef1 = a * 2^7 and the 7-bit fixed-point blend below is Pillow's, term for term.
  constexpr uint32_t kBits = 7;
  const uint32_t a = rgba[3];
  if (a == 0) {
    rgb[0] = rgb[1] = rgb[2] = 255;
    return;
  }
  const uint32_t outa255 = a * 255 + 255 * (255 - a);
  const uint32_t coef1 = a * 255 * 255 * (1u << kBits) / outa255;
  const uint32_t coef2 = 255 * (1u << kBits) - coef1;
  for (int c = 0; c < 3; ++c) {
    uint32_t t = rgba[c] * coef1 + 255 * coef2 + (0x80u << kBits);
    rgb[c] = static_cast<uint8_t>((((t >> 8) + t) >> 8) >> kBits);  // SHIFTFORDIV255
  }
}

namespace {

uint32_t be16(const uint8_t* p) { return (uint32_t(p[0]) << 8) | p[1]; }
uint32_t be32(const uint8_t* p) { return (be16(p) << 16) | be16(p + 2); }
uint32_t le16(const uint8_t* p) { return (uint32_t(p[1]) << 8) | p[0]; }
int64_t le32s(const uint8_t* p) { return static_cast<int32_t>((le16(p + 2) << 16) | le16(p)); }

// JPEG: the first start-of-frame segment (SOF0..SOF15 but DHT, JPG and DAC) holds the size.
bool jpeg_header_size(const uint8_t* d, size_t n, int64_t* w, int64_t* h) {
  size_t i = 2;
  while (i + 4 <= n) {
    if (d[i] != 0xFF) return false;
    const uint8_t marker = d[i + 1];
    if (marker == 0xFF) { ++i; continue; }  // fill byte
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) { i += 2; continue; }  // no payload
    const size_t length = be16(d + i + 2);
    const bool sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (sof) {
      if (i + 9 > n) return false;
      *h = be16(d + i + 5);
      *w = be16(d + i + 7);
      return true;
    }
    if (length < 2) return false;
    i += 2 + length;
  }
  return false;
}

// The size a PNG/JPEG/BMP/GIF header claims, read by hand: stb refuses to report
// anything over STBI_MAX_DIMENSIONS (it just says "unknown image type"), and the user
// needs to hear that the file is too large, not that it is unreadable.
bool header_size(const uint8_t* d, size_t n, int64_t* w, int64_t* h) {
  if (n >= 24 && std::memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0 && std::memcmp(d + 12, "IHDR", 4) == 0) {
    *w = be32(d + 16);
    *h = be32(d + 20);
    return true;
  }
  if (n >= 10 && std::memcmp(d, "GIF8", 4) == 0) {
    *w = le16(d + 6);
    *h = le16(d + 8);
    return true;
  }
  if (n >= 26 && d[0] == 'B' && d[1] == 'M') {
    *w = le32s(d + 18);
    *h = le32s(d + 22);
    if (*h < 0) *h = -*h;  // top-down rows
    return true;
  }
  if (n >= 4 && d[0] == 0xFF && d[1] == 0xD8) return jpeg_header_size(d, n, w, h);
  return false;
}

}  // namespace

ImageU8 decode_image_memory(const uint8_t* data, size_t size, const std::string& name, AlphaMode alpha) {
  if (size == 0) fail("image: ", name, ": empty file");
  if (size > static_cast<size_t>(INT32_MAX)) fail("image: ", name, ": file larger than 2 GiB");
  if (int64_t hw = 0, hh = 0; header_size(data, size, &hw, &hh) && (hw > kMaxImageSide || hh > kMaxImageSide))
    fail("image: ", name, ": size ", hw, "x", hh, " is larger than the ", kMaxImageSide,
         " px per side this loader accepts (downscale the image first)");
  int w = 0, h = 0, comp = 0;
  const int len = static_cast<int>(size);
  if (!stbi_info_from_memory(data, len, &w, &h, &comp))
    fail("image: ", name, ": not a readable PNG/JPEG/BMP/GIF (", stbi_failure_reason(), ")");
  if (w <= 0 || h <= 0 || w > kMaxImageSide || h > kMaxImageSide)
    fail("image: ", name, ": size ", w, "x", h, " outside 1..", kMaxImageSide);
  // req_comp = 4 when compositing: stb expands grey, palettes and transparency keys
  // (tRNS) to RGBA, as PIL's convert("RGBA") does. req_comp = 3 drops alpha.
  const int want = alpha == AlphaMode::Drop ? 3 : 4;
  unsigned char* pixels = stbi_load_from_memory(data, len, &w, &h, &comp, want);
  if (!pixels) fail("image: ", name, ": corrupt or truncated image (", stbi_failure_reason(), ")");
  ImageU8 image;
  image.width = w;
  image.height = h;
  image.channels = 3;
  const size_t count = static_cast<size_t>(w) * h;
  if (want == 3) {
    image.pixels.assign(pixels, pixels + count * 3);
  } else {
    image.pixels.resize(count * 3);
    for (size_t i = 0; i < count; ++i) {
      const uint8_t* px = pixels + i * 4;
      uint8_t* out = &image.pixels[i * 3];
      if (px[3] == 255) {
        out[0] = px[0]; out[1] = px[1]; out[2] = px[2];
      } else {
        composite_on_white(px, out);
      }
    }
  }
  stbi_image_free(pixels);
  return image;
}

ImageU8 decode_image_file(const std::string& path, AlphaMode alpha) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("image: cannot open ", path, std::filesystem::exists(path) ? "" : " (no such file)");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return decode_image_memory(bytes.data(), bytes.size(), path, alpha);
}

std::vector<uint8_t> encode_png(const ImageU8& image) {
  MMS_CHECK(image.channels == 1 || image.channels == 3 || image.channels == 4,
            "png: channels must be 1, 3 or 4, got ", image.channels);
  MMS_CHECK(image.width > 0 && image.height > 0 &&
                static_cast<int64_t>(image.pixels.size()) == image.width * image.height * image.channels,
            "png: pixel buffer does not match ", image.width, "x", image.height, "x", image.channels);
  std::vector<uint8_t> out;
  auto sink = [](void* context, void* data, int size) {
    auto* buffer = static_cast<std::vector<uint8_t>*>(context);
    auto* bytes = static_cast<uint8_t*>(data);
    buffer->insert(buffer->end(), bytes, bytes + size);
  };
  int ok = stbi_write_png_to_func(sink, &out, static_cast<int>(image.width), static_cast<int>(image.height),
                                  static_cast<int>(image.channels), image.pixels.data(),
                                  static_cast<int>(image.width * image.channels));
  MMS_CHECK(ok, "png: encoding failed");
  return out;
}

void write_png(const std::string& path, const ImageU8& image) {
  std::vector<uint8_t> bytes = encode_png(image);
  fs::path tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    if (!out) fail("png: cannot write ", tmp.string());
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!out.flush()) fail("png: write failed for ", tmp.string());
  }
  fs::rename(tmp, path);
}

// ---- Pillow's resampling (libImaging/Resample.c), transcribed for bicubic ----------

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // 22: headroom for negative lobes and sums > 1

double bicubic_filter(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}
constexpr double kBicubicSupport = 2.0;

// For each output index: the first input index, the number of taps, and `ksize`
// fixed-point weights (zero beyond the taps).
struct Coefficients {
  int ksize = 0;
  std::vector<int> first;
  std::vector<int> count;
  std::vector<int32_t> weights;
};

Coefficients precompute_coefficients(int in_size, int out_size) {
  // Pillow passes the box edges as float; (in1 - in0) is exact for these sizes.
  const float in0 = 0.0f, in1 = static_cast<float>(in_size);
  double scale = static_cast<double>(in1 - in0) / out_size;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = kBicubicSupport * filterscale;
  Coefficients c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.first.resize(out_size);
  c.count.resize(out_size);
  c.weights.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> k(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);  // truncation, as in C
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      double w = bicubic_filter((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (int x = 0; x < xmax; ++x)
      if (ww != 0.0) k[x] /= ww;
    for (int x = 0; x < xmax; ++x) {
      const double scaled = k[x] * (1 << kPrecisionBits);
      c.weights[static_cast<size_t>(xx) * c.ksize + x] =
          static_cast<int32_t>(k[x] < 0 ? -0.5 + scaled : 0.5 + scaled);
    }
    c.first[xx] = xmin;
    c.count[xx] = xmax;
  }
  return c;
}

inline uint8_t clip8(int32_t v) {
  v >>= kPrecisionBits;  // arithmetic shift: floor, like Pillow's lookup-table index
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// Horizontal pass over rows [row0, row0 + out.height) of `in`.
void resample_horizontal(const ImageU8& in, int row0, const Coefficients& c, ImageU8& out) {
  const int64_t ch = in.channels;
  for (int64_t y = 0; y < out.height; ++y) {
    const uint8_t* src = &in.pixels[(y + row0) * in.width * ch];
    uint8_t* dst = &out.pixels[y * out.width * ch];
    for (int64_t xx = 0; xx < out.width; ++xx) {
      const int32_t* k = &c.weights[xx * c.ksize];
      const int xmin = c.first[xx], taps = c.count[xx];
      for (int64_t ci = 0; ci < ch; ++ci) {
        int32_t ss = 1 << (kPrecisionBits - 1);
        for (int x = 0; x < taps; ++x) ss += src[(x + xmin) * ch + ci] * k[x];
        dst[xx * ch + ci] = clip8(ss);
      }
    }
  }
}

void resample_vertical(const ImageU8& in, const Coefficients& c, const std::vector<int>& first,
                       ImageU8& out) {
  const int64_t ch = in.channels;
  const int64_t row = in.width * ch;
  for (int64_t yy = 0; yy < out.height; ++yy) {
    const int32_t* k = &c.weights[yy * c.ksize];
    const int ymin = first[yy], taps = c.count[yy];
    uint8_t* dst = &out.pixels[yy * row];
    for (int64_t i = 0; i < row; ++i) {
      int32_t ss = 1 << (kPrecisionBits - 1);
      for (int y = 0; y < taps; ++y) ss += in.pixels[(y + ymin) * row + i] * k[y];
      dst[i] = clip8(ss);
    }
  }
}

}  // namespace

ImageU8 resize_bicubic_pillow(const ImageU8& image, int64_t out_width, int64_t out_height) {
  MMS_CHECK(out_width > 0 && out_height > 0 && out_width <= kMaxResizeSide && out_height <= kMaxResizeSide,
            "resize: output size ", out_width, "x", out_height, " is not valid");
  MMS_CHECK(image.width > 0 && image.height > 0, "resize: empty input image");
  const bool need_horizontal = out_width != image.width;
  const bool need_vertical = out_height != image.height;
  if (!need_horizontal && !need_vertical) return image;

  Coefficients vertical = precompute_coefficients(static_cast<int>(image.height), static_cast<int>(out_height));
  // Only rows some vertical tap reads are resampled horizontally.
  const int row_first = vertical.first[0];
  const int row_last = vertical.first[out_height - 1] + vertical.count[out_height - 1];

  ImageU8 current;
  std::vector<int> vertical_first = vertical.first;
  const ImageU8* source = &image;
  if (need_horizontal) {
    Coefficients horizontal = precompute_coefficients(static_cast<int>(image.width), static_cast<int>(out_width));
    current.width = out_width;
    current.height = row_last - row_first;
    current.channels = image.channels;
    current.pixels.resize(current.width * current.height * current.channels);
    resample_horizontal(image, row_first, horizontal, current);
    for (int& f : vertical_first) f -= row_first;
    source = &current;
  }
  if (!need_vertical) return current;
  ImageU8 out;
  out.width = source->width;
  out.height = out_height;
  out.channels = source->channels;
  out.pixels.resize(out.width * out.height * out.channels);
  resample_vertical(*source, vertical, vertical_first, out);
  return out;
}

ImageU8 crop(const ImageU8& image, int64_t top, int64_t left, int64_t height, int64_t width) {
  MMS_CHECK(top >= 0 && left >= 0 && height > 0 && width > 0 && top + height <= image.height &&
                left + width <= image.width,
            "crop: window ", height, "x", width, " at (", top, ", ", left, ") is outside the ", image.height,
            "x", image.width, " image");
  ImageU8 out;
  out.width = width;
  out.height = height;
  out.channels = image.channels;
  out.pixels.resize(width * height * image.channels);
  for (int64_t y = 0; y < height; ++y)
    std::memcpy(&out.pixels[y * width * out.channels],
                &image.pixels[((top + y) * image.width + left) * image.channels],
                static_cast<size_t>(width * out.channels));
  return out;
}

}  // namespace mms::data
