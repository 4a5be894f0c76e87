// Images: decoding like PIL's convert("RGB"), Pillow-exact bicubic resize, and CLIP
// preprocessing equal to transformers' CLIPImageProcessorPil (fixtures from
// tools/make_image_fixtures.py): bit-exact uint8, max |diff| <= 1e-6 after normalising.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
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

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const mms::Error& e) {
    return e.what();
  }
  return "(no error)";
}

// A file's first bytes, zero-padded to 64: enough for a header.
std::vector<uint8_t> header_bytes(std::initializer_list<uint8_t> head) {
  std::vector<uint8_t> bytes(64, 0);
  std::copy(head.begin(), head.end(), bytes.begin());
  return bytes;
}

}  // namespace

// stb refuses to even report a size over STBI_MAX_DIMENSIONS, so a 20000 px wide PNG
// used to read as "not a readable PNG/JPEG/BMP/GIF (unknown image type)".
TEST_CASE("decode: an image over 16384 px per side says so, for each format") {
  using Bytes = std::vector<uint8_t>;
  const std::string limit = "larger than the 16384 px per side";
  // A real PNG, 16385 x 1.
  const Bytes wide = encode_png(synthetic_rgb(16385, 1));
  std::string msg = error_of([&] { decode_image_memory(wide.data(), wide.size(), "wide.png"); });
  CHECK_MESSAGE(msg.find("image: wide.png: size 16385x1 is " + limit) != std::string::npos, msg);
  // A PNG header claiming 40000 x 20000 rows.
  Bytes tall = encode_png(synthetic_rgb(16, 16));
  tall[17] = 0x00; tall[18] = 0x9C; tall[19] = 0x40;                  // width 40000
  tall[20] = 0x00; tall[21] = 0x00; tall[22] = 0x4E; tall[23] = 0x20;  // height 20000
  msg = error_of([&] { decode_image_memory(tall.data(), tall.size(), "tall.png"); });
  CHECK_MESSAGE(msg.find("tall.png: size 40000x20000 is " + limit) != std::string::npos, msg);
  // GIF: logical screen 20000 x 10 (little-endian).
  const Bytes gif = header_bytes({'G', 'I', 'F', '8', '9', 'a', 0x20, 0x4E, 0x0A, 0x00});
  msg = error_of([&] { decode_image_memory(gif.data(), gif.size(), "wide.gif"); });
  CHECK_MESSAGE(msg.find("wide.gif: size 20000x10 is " + limit) != std::string::npos, msg);
  // BMP: a BITMAPINFOHEADER of 10 x -30000 (negative: top-down rows).
  Bytes bmp(64, 0);
  bmp[0] = 'B'; bmp[1] = 'M'; bmp[14] = 40;
  bmp[18] = 10;                                                  // width 10
  bmp[22] = 0xD0; bmp[23] = 0x8A; bmp[24] = 0xFF; bmp[25] = 0xFF;  // height -30000
  msg = error_of([&] { decode_image_memory(bmp.data(), bmp.size(), "tall.bmp"); });
  CHECK_MESSAGE(msg.find("tall.bmp: size 10x30000 is " + limit) != std::string::npos, msg);
  // JPEG: SOI, an APP0 segment, then SOF0 with height 8, width 30000.
  const Bytes jpeg = header_bytes({0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0, 1, 1, 0, 0, 1, 0, 1,
                                   0, 0, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00, 0x08, 0x75, 0x30, 0x03});
  msg = error_of([&] { decode_image_memory(jpeg.data(), jpeg.size(), "wide.jpg"); });
  CHECK_MESSAGE(msg.find("wide.jpg: size 30000x8 is " + limit) != std::string::npos, msg);
  // At the limit an image still decodes.
  const Bytes edge = encode_png(synthetic_rgb(16384, 1));
  CHECK(decode_image_memory(edge.data(), edge.size(), "edge.png").width == 16384);
}

// A 9000 x 1 strip at --image-size 128 would be resized to 1152000 x 128: the error
// used to be "resize: output size 1152000x128 is not valid", naming no file.
TEST_CASE("preprocess: an aspect ratio too extreme for the resize names the file and the reason") {
  const auto path = (std::filesystem::temp_directory_path() / "mms_test_strip_9000x1.png").string();
  write_png(path, synthetic_rgb(9000, 1));
  ClipImageConfig config;
  config.size = config.crop_size = 128;
  const std::string msg = error_of([&] { clip_preprocess_file(path, config); });
  CHECK_MESSAGE(msg.find("image: " + path + ": ") == 0, msg);
  CHECK_MESSAGE(msg.find("9000x1 image has too extreme an aspect ratio for a shortest-edge resize to 128 px") !=
                    std::string::npos, msg);
  CHECK_MESSAGE(msg.find("long side would become 1152000 px") != std::string::npos, msg);
  // Without a file the reason is the same.
  CHECK_THROWS_WITH_AS(clip_preprocess(synthetic_rgb(1, 9000), config),
                       doctest::Contains("1x9000 image has too extreme an aspect ratio"), mms::Error);
  // A merely wide image is fine.
  config.size = config.crop_size = 16;
  write_png(path, synthetic_rgb(2000, 3));
  CHECK(clip_preprocess_file(path, config).size() == 3 * 16 * 16);
  std::filesystem::remove(path);
}

namespace {

// Writes DIR/preprocessor_config.json and loads it for a 224 px vision tower.
struct PreprocessorDir {
  std::filesystem::path dir = std::filesystem::temp_directory_path() / "mms_test_preprocessor_config";
  PreprocessorDir() { std::filesystem::create_directories(dir); }
  ~PreprocessorDir() { std::filesystem::remove_all(dir); }
  ClipImageConfig load(const std::string& body) const {
    std::ofstream(dir / "preprocessor_config.json") << body;
    return load_clip_image_config(dir.string(), 224);
  }
  // The error for `body` must name the file and the key.
  void refuses(const std::string& body, const std::string& key, const std::string& detail) const {
    CAPTURE(body);
    const std::string msg = error_of([&] { load(body); });
    CHECK_MESSAGE(msg.find((dir / "preprocessor_config.json").string() + ": key '" + key + "': ") == 0, msg);
    CHECK_MESSAGE(msg.find(detail) != std::string::npos, msg);
  }
};

constexpr const char* kMeanStd =
    R"("image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711])";

}  // namespace

// Settings clip_preprocess does not implement used to be dropped without a word.
TEST_CASE("preprocessor_config.json: CLIP's own files load; every unsupported setting is refused by key") {
  PreprocessorDir d;
  // openai/clip-vit-base-patch32 as published.
  ClipImageConfig c = d.load(std::string(R"({"crop_size": 224, "do_center_crop": true, "do_normalize": true,
      "do_resize": true, "feature_extractor_type": "CLIPFeatureExtractor", )") + kMeanStd +
                             R"(, "resample": 3, "size": 224})");
  CHECK(c.size == 224);
  CHECK(c.crop_size == 224);
  CHECK(c.mean[2] == 0.40821073);
  CHECK(c.std[0] == 0.26862954);
  // As newer transformers save it, and as its fast processor saves it.
  c = d.load(std::string(R"({"crop_size": {"height": 224, "width": 224}, "do_center_crop": true,
      "do_convert_rgb": true, "do_normalize": true, "do_rescale": true, "do_resize": true, )") + kMeanStd +
             R"(, "image_processor_type": "CLIPImageProcessor", "processor_class": "CLIPProcessor",
      "resample": 3, "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 256}})");
  CHECK(c.size == 256);
  CHECK(c.crop_size == 224);
  c = d.load(std::string(R"({"crop_size": {"height": 224, "width": 224}, "data_format": "channels_first",
      "default_to_square": false, "device": null, "disable_grouping": null, "do_pad": null, "input_data_format": null,
      "return_tensors": null, "image_processor_type": "CLIPImageProcessorFast", "resample": 3,
      "size": {"shortest_edge": 224},
      "_valid_processor_keys": ["images"], )") + kMeanStd + "}");
  CHECK(c.size == 224);

  d.refuses(R"({"size": {"height": 224, "width": 224}})", "size", "only a shortest-edge resize");
  d.refuses(R"({"size": {"longest_edge": 224}})", "size", "only a shortest-edge resize");
  d.refuses(R"({"crop_size": {"height": 224, "width": 200}})", "crop_size", "non-square crop 224x200");
  d.refuses(R"({"crop_size": {"height": 224}})", "crop_size", "expected {\"height\": N, \"width\": N}");
  d.refuses(R"({"do_resize": false})", "do_resize", "false is not supported");
  d.refuses(R"({"do_center_crop": false})", "do_center_crop", "false is not supported");
  d.refuses(R"({"do_normalize": false})", "do_normalize", "false is not supported");
  d.refuses(R"({"do_rescale": false})", "do_rescale", "false is not supported");
  d.refuses(R"({"do_convert_rgb": false})", "do_convert_rgb", "false is not supported");
  d.refuses(R"({"do_resize": "yes"})", "do_resize", "expected true or false");
  d.refuses(R"({"resample": 2})", "resample", "2 is not supported (only 3, bicubic");
  d.refuses(R"({"rescale_factor": 1.0})", "rescale_factor", "only 1/255");
  d.refuses(R"({"default_to_square": true})", "default_to_square", "true is not supported");
  d.refuses(R"({"image_std": [0.5, 0, 0.5]})", "image_std", "element 1 must be a positive number");
  d.refuses(R"({"image_mean": [0.5, 0.5]})", "image_mean", "expected 3 numbers");
  d.refuses(R"({"feature_extractor_type": "ViTFeatureExtractor"})", "feature_extractor_type",
            "not a CLIP image processor");
  d.refuses(R"({"crop_pct": 0.875})", "crop_pct", "0.875 is not supported");
  d.refuses(R"({"do_pad": true})", "do_pad", "true is not supported");
  d.refuses(R"({"size": {"shortest_edge": -3}})", "size.shortest_edge", "expected a positive integer");
}
