// Images: decoding like PIL's convert("RGB"), Pillow-exact bicubic resize, and CLIP
// preprocessing equal to transformers' CLIPImageProcessorPil (fixtures from
// tools/make_image_fixtures.py): bit-exact uint8, max |diff| <= 1e-6 after normalising.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data/clip_preprocess.h"
#include "data/image.h"
#include "data_test_paths.h"
#include "tensor/error.h"

using namespace mms::data;

namespace {

std::string image_fixture(const std::string& name) { return mms::test::data_fixture("images/" + name); }

std::vector<char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in, "missing fixture ", path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

nlohmann::json manifest() {
  std::ifstream in(image_fixture("manifest.json"));
  REQUIRE(in);
  return nlohmann::json::parse(in);
}

ImageU8 synthetic_rgb(int64_t w, int64_t h) {
  ImageU8 im{w, h, 3, std::vector<uint8_t>(static_cast<size_t>(w * h * 3))};
  for (int64_t i = 0; i < w * h * 3; ++i) im.pixels[i] = static_cast<uint8_t>((i * 37 + (i / 7) * 11) % 256);
  return im;
}

}  // namespace

TEST_CASE("preprocess: equals CLIPImageProcessorPil on every PNG case") {
  const nlohmann::json cases = manifest()["cases"];
  double worst = 0.0;
  int checked = 0;
  for (const auto& c : cases) {
    if (!c.contains("pixel_values")) continue;
    const std::string name = c["name"];
    CAPTURE(name);
    const int64_t size = c["size"];
    ClipImageConfig config;
    config.size = config.crop_size = size;
    ImageU8 rgb = decode_image_file(image_fixture(c["file"]));
    CHECK(rgb.width == c["width"].get<int64_t>());
    CHECK(rgb.height == c["height"].get<int64_t>());
    std::vector<float> got = clip_preprocess(rgb, config);
    std::vector<char> raw = read_bytes(image_fixture(c["pixel_values"]));
    REQUIRE(raw.size() == got.size() * sizeof(float));
    std::vector<float> want(got.size());
    std::memcpy(want.data(), raw.data(), raw.size());
    double max_diff = 0.0;
    for (size_t i = 0; i < got.size(); ++i) max_diff = std::max(max_diff, std::fabs(double(got[i]) - want[i]));
    CHECK(max_diff <= 1e-6);
    worst = std::max(worst, max_diff);
    ++checked;
  }
  CHECK(checked >= 10);
  MESSAGE("preprocess cases: ", checked, ", max |diff| vs transformers = ", worst);
}

TEST_CASE("preprocess: 224 crop is bit-exact uint8 against Pillow") {
  const nlohmann::json cases = manifest()["cases"];
  for (const auto& c : cases) {
    if (!c.contains("crop")) continue;
    ClipImageConfig config;  // 224 defaults
    ImageU8 cropped = clip_resize_and_crop(decode_image_file(image_fixture(c["file"])), config);
    std::vector<char> want = read_bytes(image_fixture(c["crop"]));
    REQUIRE(cropped.pixels.size() == want.size());
    int64_t mismatches = 0;
    for (size_t i = 0; i < want.size(); ++i) mismatches += cropped.pixels[i] != static_cast<uint8_t>(want[i]);
    CHECK(mismatches == 0);
  }
}

TEST_CASE("decode: BMP and GIF (first frame) equal PIL; JPEG close") {
  const nlohmann::json cases = manifest()["cases"];
  for (const auto& c : cases) {
    if (!c.contains("rgb")) continue;
    const std::string name = c["name"];
    CAPTURE(name);
    ImageU8 im = decode_image_file(image_fixture(c["file"]));
    CHECK(im.width == c["width"].get<int64_t>());
    CHECK(im.height == c["height"].get<int64_t>());
    std::vector<char> want = read_bytes(image_fixture(c["rgb"]));
    REQUIRE(im.pixels.size() == want.size());
    int max_diff = 0;
    for (size_t i = 0; i < want.size(); ++i)
      max_diff = std::max(max_diff, std::abs(int(im.pixels[i]) - int(static_cast<uint8_t>(want[i]))));
    if (c.value("lossy_decoder", false))
      CHECK(max_diff <= 16);  // stb's IDCT/upsampling differ from libjpeg's
    else
      CHECK(max_diff == 0);
  }
}

TEST_CASE("decode: AlphaMode::Drop equals PIL convert(\"RGB\"); compositing is exact") {
  ImageU8 dropped = decode_image_file(image_fixture("rgba_90x130.png"), AlphaMode::Drop);
  std::vector<char> want = read_bytes(image_fixture("rgba_90x130.drop.u8"));
  REQUIRE(dropped.pixels.size() == want.size());
  CHECK(std::memcmp(dropped.pixels.data(), want.data(), want.size()) == 0);
  // Opaque pixels pass through unchanged; transparent ones become white.
  for (int v = 0; v < 256; ++v) {
    uint8_t px[4] = {uint8_t(v), uint8_t(255 - v), uint8_t(v / 2), 255}, out[3];
    composite_on_white(px, out);
    CHECK(out[0] == px[0]);
    CHECK(out[1] == px[1]);
    CHECK(out[2] == px[2]);
  }
  uint8_t clear[4] = {10, 20, 30, 0}, out[3];
  composite_on_white(clear, out);
  CHECK((out[0] == 255 && out[1] == 255 && out[2] == 255));
}

TEST_CASE("resize: identity, constants stay constant, shapes") {
  ImageU8 im = synthetic_rgb(17, 9);
  CHECK(resize_bicubic_pillow(im, 17, 9).pixels == im.pixels);
  ImageU8 flat{13, 7, 3, std::vector<uint8_t>(13 * 7 * 3, 200)};
  for (auto [w, h] : {std::pair{5, 3}, {40, 21}, {13, 30}, {1, 1}}) {
    ImageU8 r = resize_bicubic_pillow(flat, w, h);
    CHECK(r.width == w);
    CHECK(r.height == h);
    for (uint8_t v : r.pixels) CHECK(v == 200);  // weights are normalised per output
  }
  CHECK_THROWS_AS(resize_bicubic_pillow(im, 0, 3), mms::Error);
  CHECK(shortest_edge_size(640, 480, 224) == std::pair<int64_t, int64_t>{298, 224});
  CHECK(shortest_edge_size(77, 101, 33) == std::pair<int64_t, int64_t>{33, 43});
}

TEST_CASE("png: write then decode round-trips") {
  ImageU8 im = synthetic_rgb(23, 11);
  auto path = (std::filesystem::temp_directory_path() / "mms_test_roundtrip.png").string();
  write_png(path, im);
  ImageU8 back = decode_image_file(path);
  CHECK(back.width == 23);
  CHECK(back.height == 11);
  CHECK(back.pixels == im.pixels);
  std::filesystem::remove(path);
}

TEST_CASE("decode: hostile inputs are rejected with the file name, never crash") {
  std::vector<uint8_t> png = encode_png(synthetic_rgb(16, 16));
  SUBCASE("missing file") {
    try {
      decode_image_file("/nonexistent/dir/x.png");
      FAIL("expected an error");
    } catch (const mms::Error& e) {
      CHECK(std::string(e.what()).find("/nonexistent/dir/x.png") != std::string::npos);
      CHECK(std::string(e.what()).find("no such file") != std::string::npos);
    }
  }
  SUBCASE("empty and garbage") {
    CHECK_THROWS_AS(decode_image_memory(png.data(), 0, "empty.png"), mms::Error);
    std::vector<uint8_t> garbage(100, 0x5a);
    CHECK_THROWS_AS(decode_image_memory(garbage.data(), garbage.size(), "garbage.png"), mms::Error);
  }
  SUBCASE("every truncation of a valid PNG") {
    int rejected = 0;
    for (size_t n = 1; n < png.size(); ++n) {
      try {
        decode_image_memory(png.data(), n, "cut.png");
      } catch (const mms::Error& e) {
        CHECK(std::string(e.what()).find("cut.png") != std::string::npos);
        ++rejected;
      }
    }
    CHECK(rejected >= static_cast<int>(png.size()) - 16);  // the tail (IEND) may be optional
  }
  SUBCASE("header claiming a huge image") {
    std::vector<uint8_t> big = png;
    // IHDR width at bytes 16..19 (big-endian): claim 1,000,000 pixels wide.
    big[16] = 0x00; big[17] = 0x0F; big[18] = 0x42; big[19] = 0x40;
    CHECK_THROWS_AS(decode_image_memory(big.data(), big.size(), "big.png"), mms::Error);
  }
  SUBCASE("random byte flips (deterministic)") {
    uint32_t state = 12345;
    auto next = [&state] { state = state * 1664525u + 1013904223u; return state >> 8; };
    int decoded = 0, rejected = 0;
    for (int trial = 0; trial < 300; ++trial) {
      std::vector<uint8_t> bad = png;
      for (int k = 0; k < 4; ++k) bad[next() % bad.size()] = static_cast<uint8_t>(next());
      try {
        ImageU8 im = decode_image_memory(bad.data(), bad.size(), "flipped.png");
        CHECK(im.pixels.size() == static_cast<size_t>(im.width * im.height * 3));
        ++decoded;
      } catch (const mms::Error&) {
        ++rejected;
      }
    }
    CHECK(decoded + rejected == 300);
  }
}
