// safetensors: reads files written by the reference Python implementation, round-trips
// every dtype through our writer, writes atomically, loads sharded checkpoints, and
// rejects hostile files with a clear mms::Error -- including a fuzz pass over
// truncations and random byte flips that must never crash (CI runs it under ASan).
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "autograd/api.h"
#include "tensor/safetensors.h"

using namespace mms;
namespace fs = std::filesystem;

namespace {

// A fresh directory per test case, removed at the end.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("mms_safetensors_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A safetensors image from a header text and data bytes (header length as given).
std::string image(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

// The message of the mms::Error that parsing `bytes` throws ("" when it does not throw).
std::string parse_error(const std::string& bytes) {
  try {
    parse_safetensors(bytes.data(), bytes.size(), "test.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string fixture(const std::string& name) {
  return std::string(MMS_SOURCE_DIR) + "/tests/fixtures/safetensors/" + name;
}

}  // namespace

TEST_CASE("reads a file written by the reference Python safetensors") {
  SafetensorsContents c = load_safetensors_with_metadata(fixture("reference.safetensors"));
  CHECK(c.metadata.at("format") == "pt");
  CHECK(c.metadata.at("origin") == "make_safetensors_fixture.py");
  CHECK(c.tensors.size() == 10);

  const Tensor& f64 = c.tensors.at("f64");
  CHECK(f64.dtype() == DType::Float64);
  CHECK(f64.shape() == Shape{2, 3});
  CHECK(f64.to_vector<double>() == std::vector<double>{-1, -0.5, 0, 0.5, 1, 1.5});
  CHECK(c.tensors.at("f32").to_vector<float>() == std::vector<float>{1.5f, -2.25f, 3e-3f});
  const Tensor& f16 = c.tensors.at("f16");
  CHECK(f16.dtype() == DType::Float16);
  CHECK(f16.to_vector<double>() == std::vector<double>{0.5, -1.0, 65504.0, std::ldexp(1.0, -24)});
  const Tensor& bf16 = c.tensors.at("bf16");
  CHECK(bf16.dtype() == DType::BFloat16);
  CHECK(bf16.to_vector<double>() == std::vector<double>{1.0, -0.5, 3.140625});
  CHECK(c.tensors.at("i64").to_vector<int64_t>() == std::vector<int64_t>{-3, 0, int64_t(1) << 40, 7});
  CHECK(c.tensors.at("i32").shape() == Shape{2, 1});
  CHECK(c.tensors.at("i32").to_vector<int32_t>() == std::vector<int32_t>{-7, 123456});
  CHECK(c.tensors.at("u8").to_vector<uint8_t>() == std::vector<uint8_t>{0, 128, 255});
  CHECK(c.tensors.at("bool").to_vector<bool>() == std::vector<bool>{true, false, false, true});
  const Tensor& scale = c.tensors.at("logit_scale");
  CHECK(scale.dim() == 0);
  CHECK(scale.item<float>() == 2.6592f);
  CHECK(c.tensors.at("empty").shape() == Shape{0, 5});

  // Views into the read-only mapping; writing into them is refused.
  CHECK(f64.storage()->read_only());
  Tensor target = f64;
  CHECK_THROWS_AS(ops::copy_(target, zeros({2, 3}, DType::Float64)), Error);

  // Converting to the compute dtype on load.
  TensorMap as_f64 = load_safetensors(fixture("reference.safetensors"), DType::Float64);
  CHECK(as_f64.at("bf16").dtype() == DType::Float64);
  CHECK(as_f64.at("bf16").to_vector<double>() == std::vector<double>{1.0, -0.5, 3.140625});
  CHECK(as_f64.at("i64").dtype() == DType::Int64);
  CHECK(as_f64.at("f16").to(DType::Float32).to_vector<float>()[2] == 65504.0f);
}

TEST_CASE("tensors outlive the map they came from (the mapping stays alive)") {
  Tensor kept;
  {
    TensorMap all = load_safetensors(fixture("reference.safetensors"));
    kept = all.at("f64");
  }
  CHECK(kept.to_vector<double>() == std::vector<double>{-1, -0.5, 0, 0.5, 1, 1.5});
}

TEST_CASE("round trip of every dtype, 0-d, empty and non-contiguous tensors, with metadata") {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  Tensor matrix = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  std::vector<std::pair<std::string, Tensor>> tensors = {
      {"z.f64.transposed", ops::transpose(matrix, 0, 1)},  // non-contiguous input
      {"a.f32", from_vector<float>({0.25f, -8.0f, 1e-20f}, {3})},
      {"b.bf16", from_vector<float>({1.0f, -2.5f}, {2}).to(DType::BFloat16)},
      {"c.f16", from_vector<float>({0.1f, 1000.0f, -3.0f}, {3, 1}).to(DType::Float16)},
      {"d.i64", from_vector<int64_t>({-1, int64_t(1) << 50}, {2})},
      {"e.i32", from_vector<int32_t>({5, -6, 7}, {3})},
      {"f.u8", from_vector<uint8_t>({9, 255}, {2})},
      {"g.bool", from_vector<bool>({false, true, true}, {3})},
      {"logit_scale", scalar_tensor(2.6592, DType::Float32)},
      {"nothing", zeros({3, 0})},
  };
  save_safetensors(path, tensors, {{"format", "pt"}, {"note", "quotes \" and \\ survive"}});

  const std::string bytes = read_bytes(path);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(bytes[i]);
  CHECK(header_len % 8 == 0);

  SafetensorsContents c = load_safetensors_with_metadata(path);
  CHECK(c.metadata.at("note") == "quotes \" and \\ survive");
  CHECK(c.tensors.size() == tensors.size());
  for (const auto& [name, original] : tensors) {
    INFO(name);
    const Tensor& back = c.tensors.at(name);
    CHECK(back.dtype() == original.dtype());
    CHECK(back.shape() == original.shape());
    CHECK(back.to_vector<double>() == original.to_vector<double>());
    // The writer aligns every tensor, so every one is a view into the mapping.
    CHECK(back.storage()->read_only());
    CHECK(reinterpret_cast<uintptr_t>(back.raw_data()) % back.element_size() == 0);
  }
  CHECK(c.tensors.at("logit_scale").dim() == 0);
  CHECK(c.tensors.at("z.f64.transposed").to_vector<double>() == std::vector<double>{1, 4, 2, 5, 3, 6});
}

TEST_CASE("misaligned tensors are copied into aligned buffers") {
  // Header of 13 bytes + 8 = data at absolute offset 21: an F32 there is misaligned.
  float values[2] = {1.5f, -7.25f};
  std::string data(reinterpret_cast<const char*>(values), 8);
  std::string header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  std::string bytes = image(header, data);
  SafetensorsContents c = parse_safetensors(bytes.data(), bytes.size(), "misaligned");
  const Tensor& x = c.tensors.at("x");
  CHECK(reinterpret_cast<uintptr_t>(x.raw_data()) % 4 == 0);
  CHECK(!x.storage()->read_only());  // its own copy
  CHECK(x.to_vector<float>() == std::vector<float>{1.5f, -7.25f});

  TempDir dir;
  write_bytes(dir.file("m.safetensors"), bytes);
  CHECK(load_safetensors(dir.file("m.safetensors")).at("x").to_vector<float>() ==
        std::vector<float>{1.5f, -7.25f});
}

TEST_CASE("hostile headers are rejected with messages naming file and tensor") {
  const std::string four(4, '\0');
  struct Case {
    std::string bytes, expected;
  };
  auto with = [&](const std::string& header, const std::string& data = std::string(4, '\0')) {
    return image(header, data);
  };
  std::string too_long(8, '\0');
  too_long[4] = 1;  // 2^32: over the 100 MB limit
  std::string past_end = image("{}", "");
  past_end[0] = 100;
  std::vector<Case> cases = {
      {"abc", "too short"},
      {too_long, "100 MB"},
      {past_end, "runs past the end"},
      {with("{\"x\": "), "not valid JSON"},
      {with("[1, 2]"), "must be a JSON object"},
      {with(R"({"x": 5})"), "tensor 'x': entry must be a JSON object"},
      {with(R"({"x":{"shape":[1],"data_offsets":[0,4]}})"), "tensor 'x': missing \"dtype\""},
      {with(R"({"x":{"dtype":"F32","data_offsets":[0,4]}})"), "tensor 'x': missing \"shape\""},
      {with(R"({"x":{"dtype":"F32","shape":[1]}})"), "tensor 'x': missing \"data_offsets\""},
      {with(R"({"x":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}})"), "unsupported dtype 'F8_E4M3'"},
      {with(R"({"x":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})"), "dtype must be a string"},
      {with(R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})"), "non-negative integers"},
      {with(R"({"x":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})"), "non-negative integers"},
      {with(R"({"x":{"dtype":"F32","shape":"1","data_offsets":[0,4]}})"), "shape must be an array"},
      {with(R"({"x":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}})"),
       "overflows"},
      {with(R"({"x":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,4]}})"), "overflows"},
      {with(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}})"), "outside the data section"},
      {with(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})"), "outside the data section"},
      {with(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0]}})"), "must be [begin, end]"},
      {with(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,-4]}})"), "non-negative integers"},
      {with(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]}})"), "outside"},
      {with(R"({"x":{"dtype":"U8","shape":[3],"data_offsets":[0,4]}})"), "tensor 'x': data_offsets span 4"},
      {with(R"({"x":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},"y":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})"),
       "tensor 'y' [2, 4) overlaps tensor 'x'"},
      {with(R"({"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"x":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})"),
       "tensor 'x' appears twice"},
      {with(R"({"__metadata__":{"a":1}})"), "__metadata__ value of 'a' must be a string"},
      {with(R"({"__metadata__":[1]})"), "__metadata__ must be an object"},
      {with(R"({"m":{"dtype":"BOOL","shape":[4],"data_offsets":[0,4]}})", std::string("\x01\x00\x02\x00", 4)),
       "tensor 'm' (BOOL) holds byte 2 at element 2"},
  };
  for (const Case& c : cases) {
    INFO("expected: ", c.expected);
    const std::string message = parse_error(c.bytes);
    CHECK(contains(message, c.expected));
    CHECK(contains(message, "test.safetensors"));
  }

  // From disk, the message names the path.
  TempDir dir;
  write_bytes(dir.file("bad.safetensors"), cases[16].bytes);
  CHECK_THROWS_WITH_AS(load_safetensors(dir.file("bad.safetensors")),
                       doctest::Contains("bad.safetensors: tensor 'x'"), Error);
  write_bytes(dir.file("empty.safetensors"), "");
  CHECK_THROWS_WITH_AS(load_safetensors(dir.file("empty.safetensors")), doctest::Contains("too short"), Error);
  CHECK_THROWS_WITH_AS(load_safetensors(dir.file("missing.safetensors")), doctest::Contains("cannot open"),
                       Error);
}

TEST_CASE("fuzz: truncations and random byte flips give an error or a valid parse, never a crash") {
  TempDir dir;
  const std::string path = dir.file("seed.safetensors");
  save_safetensors(path,
                   std::vector<std::pair<std::string, Tensor>>{
                       {"w", from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3})},
                       {"b", from_vector<double>({0.5, -0.5}, {2})},
                       {"h", from_vector<float>({1, 2}, {2}).to(DType::BFloat16)},
                       {"ids", from_vector<int64_t>({3, 1, 2}, {3})},
                       {"mask", from_vector<bool>({true, false}, {2})},
                       {"s", scalar_tensor(3.0)}},
                   {{"k", "v"}});
  const std::string seed = read_bytes(path);
  REQUIRE(parse_error(seed).empty());

  // Every truncation: the last tensor reaches the end of the file, so all must fail.
  for (size_t n = 0; n < seed.size(); ++n) {
    INFO("truncated to ", n, " bytes");
    CHECK(!parse_error(seed.substr(0, n)).empty());
  }

  // Random flips anywhere; a parse that succeeds must give readable, consistent tensors.
  std::mt19937_64 rng(20240601);
  int rejected = 0, accepted = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string bytes = seed;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      const size_t at = rng() % bytes.size();
      bytes[at] = static_cast<char>(rng() % 3 == 0 ? bytes[at] ^ (1 << (rng() % 8)) : rng() & 0xff);
    }
    try {
      SafetensorsContents c = parse_safetensors(bytes.data(), bytes.size(), "fuzz");
      for (auto& [name, t] : c.tensors) {
        // Touch every byte through the public API (converting to double reads them all).
        std::vector<double> values = t.to_vector<double>();
        CHECK(static_cast<int64_t>(values.size()) == t.numel());
      }
      ++accepted;
    } catch (const Error& e) {
      CHECK(std::strlen(e.what()) > 0);
      ++rejected;
    }
  }
  // Most flips land in the header and must be caught; data-byte flips parse fine.
  CHECK(rejected > 500);
  CHECK(accepted > 100);

  // Random garbage headers with a plausible length.
  for (int iter = 0; iter < 500; ++iter) {
    std::string header(1 + rng() % 64, ' ');
    const std::string alphabet = "{}[]\":,0123456789-eE.dtypeshapedata_offsetsF32U8BOOL ";
    for (char& ch : header) ch = alphabet[rng() % alphabet.size()];
    std::string bytes = image(header, std::string(rng() % 16, '\x01'));
    try {
      parse_safetensors(bytes.data(), bytes.size(), "garbage");
    } catch (const Error&) {
    }
  }
}

TEST_CASE("writes are atomic: a failed save leaves the old file intact and no temp files") {
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  save_safetensors(path, std::vector<std::pair<std::string, Tensor>>{{"a", ones({2})}});
  const std::string before = read_bytes(path);

  // Bad input (a duplicate name) throws before anything is written.
  CHECK_THROWS_WITH_AS(save_safetensors(path, std::vector<std::pair<std::string, Tensor>>{
                                                  {"a", ones({3})}, {"a", ones({1})}}),
                       doctest::Contains("tensor 'a' given twice"), Error);
  CHECK_THROWS_AS(save_safetensors(path, std::vector<std::pair<std::string, Tensor>>{{"__metadata__", ones({1})}}),
                  Error);
  CHECK(read_bytes(path) == before);

  // Unwritable destination: the rename target is a directory.
  fs::create_directories(dir.file("occupied"));
  CHECK_THROWS_AS(save_safetensors(dir.file("occupied"),
                                   std::vector<std::pair<std::string, Tensor>>{{"a", ones({2})}}),
                  Error);
  // Missing parent directory.
  CHECK_THROWS_WITH_AS(save_safetensors(dir.file("no/such/dir/x.safetensors"),
                                        std::vector<std::pair<std::string, Tensor>>{{"a", ones({2})}}),
                       doctest::Contains("cannot create a temporary file"), Error);

  // Overwriting works and leaves exactly the two entries behind.
  save_safetensors(path, std::vector<std::pair<std::string, Tensor>>{{"a", full({2}, 5.0)}});
  CHECK(load_safetensors(path).at("a").to_vector<float>() == std::vector<float>{5, 5});
  int entries = 0;
  for (const auto& entry : fs::directory_iterator(dir.path)) {
    (void)entry;
    ++entries;
  }
  CHECK(entries == 2);  // ckpt.safetensors and occupied/
}

TEST_CASE("a save refuses what no reader could open, before writing anything") {
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  using Named = std::vector<std::pair<std::string, Tensor>>;
  // JSON text is UTF-8: a name or a metadata value that is not is named.
  CHECK_THROWS_WITH_AS(save_safetensors(path, Named{{"w\xe9", ones({1})}}),
                       doctest::Contains("tensor name 'w\xe9' is not valid UTF-8"), Error);
  CHECK_THROWS_WITH_AS(save_safetensors(path, Named{{"w", ones({1})}}, {{"out", "run\xe9"}}),
                       doctest::Contains("__metadata__ entry 'out' is not valid UTF-8"), Error);
  // A header over the 100 MB the reader accepts.
  CHECK_THROWS_WITH_AS(save_safetensors(path, Named{{"w", ones({1})}}, {{"log", std::string(100'000'001, 'x')}}),
                       doctest::Contains("over the format's 100 MB limit"), Error);
  CHECK(fs::is_empty(dir.path));  // no file, no temporary left behind
}

TEST_CASE("a saved file gets the umask's permissions, and the process's umask is left alone") {
  TempDir dir;
  const mode_t before = ::umask(027);
  save_safetensors(dir.file("a.safetensors"), std::vector<std::pair<std::string, Tensor>>{{"w", ones({1})}});
  const mode_t during = ::umask(before);
  CHECK(during == 027);
  const auto perms = fs::status(dir.file("a.safetensors")).permissions();
  CHECK(perms == (fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read));
}

TEST_CASE("checkpoint directories: single file, sharded index, and bad indexes") {
  TempDir dir;
  save_safetensors(dir.file("model.safetensors"), TensorMap{{"x", ones({2})}});
  CHECK(load_safetensors_dir(dir.path.string()).count("x") == 1);
  CHECK(load_safetensors_dir(dir.file("model.safetensors")).count("x") == 1);

  TempDir sharded;
  save_safetensors(sharded.file("model-00001-of-00002.safetensors"),
                   TensorMap{{"a.weight", full({2, 2}, 1.0)}, {"a.bias", full({2}, 2.0)}});
  save_safetensors(sharded.file("model-00002-of-00002.safetensors"), TensorMap{{"b.weight", full({3}, 3.0)}});
  const std::string index_path = sharded.file("model.safetensors.index.json");
  write_bytes(index_path, R"({"metadata": {"total_size": 36}, "weight_map": {
      "a.weight": "model-00001-of-00002.safetensors", "a.bias": "model-00001-of-00002.safetensors",
      "b.weight": "model-00002-of-00002.safetensors"}})");
  TensorMap all = load_safetensors_dir(sharded.path.string(), DType::Float64);
  CHECK(all.size() == 3);
  CHECK(all.at("b.weight").dtype() == DType::Float64);
  CHECK(all.at("b.weight").to_vector<double>() == std::vector<double>{3, 3, 3});
  CHECK(all.at("a.bias").to_vector<double>() == std::vector<double>{2, 2});

  write_bytes(index_path, R"({"weight_map": {"c.weight": "model-00002-of-00002.safetensors"}})");
  CHECK_THROWS_WITH_AS(load_safetensors_dir(sharded.path.string()),
                       doctest::Contains("tensor 'c.weight' is listed in shard"), Error);
  write_bytes(index_path, R"({"weight_map": {"a.weight": "../model.safetensors"}})");
  CHECK_THROWS_WITH_AS(load_safetensors_dir(sharded.path.string()), doctest::Contains("not a file name"),
                       Error);
  write_bytes(index_path, R"({"weight_map": [1]})");
  CHECK_THROWS_WITH_AS(load_safetensors_dir(sharded.path.string()), doctest::Contains("weight_map"), Error);
  save_safetensors(sharded.file("model-00002-of-00002.safetensors"), TensorMap{{"a.bias", full({2}, 2.0)}});
  write_bytes(index_path, R"({"weight_map": {"a.weight": "model-00001-of-00002.safetensors",
      "a.bias": "model-00002-of-00002.safetensors"}})");
  CHECK_THROWS_WITH_AS(load_safetensors_dir(sharded.path.string()), doctest::Contains("appears in both"),
                       Error);

  TempDir empty;
  CHECK_THROWS_WITH_AS(load_safetensors_dir(empty.path.string()),
                       doctest::Contains("neither model.safetensors nor"), Error);
}
