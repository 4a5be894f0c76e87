// MM-SCALE layout: the synthetic generator's output reads back in both file forms and
// the splits; every kind of bad input (a key repeated in a JSON object included) is
// rejected with FILE:LINE and the field, or skipped and counted with skip_bad; fuzzed
// JSONL never crashes the loader.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "data/image.h"
#include "data/jsonl.h"
#include "data/mmscale_dataset.h"
#include "data/synthetic.h"
#include "tensor/error.h"

using namespace mms::data;
namespace fs = std::filesystem;

namespace {

fs::path temp_root(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("mms_test_" + name);
  fs::remove_all(p);
  fs::create_directories(p / "images");
  return p;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
}

void tiny_png(const fs::path& p) {
  write_png(p.string(), ImageU8{4, 4, 3, std::vector<uint8_t>(48, 128)});
}

std::string row(const std::string& image, const std::string& sid, const std::string& extra = "",
                const std::string& text = "someone helps", const std::string& rating = "3.5",
                const std::string& modality = "text") {
  return "{\"image_id\":\"" + image + "\",\"scenario_id\":\"" + sid + "\",\"text\":\"" + text +
         "\",\"mean_rating\":" + rating + ",\"ratings\":[3,4,4],\"rating_std\":0.47,\"modality\":\"" + modality +
         "\"" + extra + "}\n";
}

// Loads `jsonl` (written to ROOT/data.jsonl, images a.png b.png present) expecting an
// error that contains every fragment.
void expect_error(const std::string& jsonl, std::vector<std::string> fragments) {
  fs::path root = temp_root("bad");
  tiny_png(root / "images" / "a.png");
  tiny_png(root / "images" / "b.png");
  write(root / "data.jsonl", jsonl);
  try {
    load_mmscale_file((root / "data.jsonl").string(), (root / "images").string());
    FAIL("expected an error for: ", jsonl);
  } catch (const mms::Error& e) {
    const std::string msg = e.what();
    for (const auto& f : fragments) CHECK_MESSAGE(msg.find(f) != std::string::npos, "'", f, "' not in: ", msg);
  }
}

}  // namespace

TEST_CASE("synthetic: layout reads back; both file forms and the splits agree") {
  fs::path root = temp_root("synthetic");
  SyntheticSummary s = write_synthetic_dataset(root.string(), {.num_images = 30, .seed = 7});
  CHECK(s.images == 30);
  CHECK(s.scenarios >= 30 * 4);
  CHECK(s.scenarios <= 30 * 6);
  Dataset flat = load_mmscale_file((root / "mmscale_clean_flat.jsonl").string(), (root / "images").string(),
                                   {.decode_images = true});
  Dataset contexts = load_mmscale_all(root.string());
  REQUIRE(flat.images.size() == 30);
  REQUIRE(contexts.images.size() == 30);
  CHECK(flat.num_scenarios() == s.scenarios);
  CHECK(flat.report.skipped.total() == 0);
  for (size_t i = 0; i < 30; ++i) {
    CHECK(flat.images[i].image_id == contexts.images[i].image_id);
    REQUIRE(flat.images[i].scenarios.size() == contexts.images[i].scenarios.size());
    for (size_t k = 0; k < flat.images[i].scenarios.size(); ++k) {
      const Scenario &a = flat.images[i].scenarios[k], &b = contexts.images[i].scenarios[k];
      CHECK(a.scenario_id == b.scenario_id);
      CHECK(a.text == b.text);
      CHECK(a.mean_rating == b.mean_rating);
      CHECK(a.ratings == b.ratings);
      CHECK(a.modality == b.modality);
      CHECK(a.ratings.size() == 3);
      CHECK(a.mean_rating >= 1.0);
      CHECK(a.mean_rating <= 5.0);
    }
  }
  std::set<std::string> seen;
  int64_t split_images = 0;
  std::array<int64_t, 3> modality_count{};
  for (const char* split : {"train", "val", "test"}) {
    Dataset d = load_mmscale_split(root.string(), split);
    split_images += static_cast<int64_t>(d.images.size());
    for (const auto& im : d.images) {
      CHECK(seen.insert(im.image_id).second);  // image-disjoint
      for (const auto& sc : im.scenarios) ++modality_count[static_cast<int>(sc.modality)];
    }
  }
  CHECK(split_images == 30);
  for (int64_t c : modality_count) CHECK(c > 10);  // all three sources present
  CHECK(decode_image_file(flat.images[0].path).width == 64);
}

TEST_CASE("synthetic: deterministic per seed") {
  fs::path a = temp_root("syn_a"), b = temp_root("syn_b"), c = temp_root("syn_c");
  write_synthetic_dataset(a.string(), {.num_images = 12, .seed = 3});
  write_synthetic_dataset(b.string(), {.num_images = 12, .seed = 3});
  write_synthetic_dataset(c.string(), {.num_images = 12, .seed = 4});
  for (const char* f : {"mmscale_clean_flat.jsonl", "mmscale_clean_contexts.jsonl", "splits/train.jsonl",
                        "images/00005.png"})
    CHECK(slurp(a / f) == slurp(b / f));
  CHECK(slurp(a / "mmscale_clean_flat.jsonl") != slurp(c / "mmscale_clean_flat.jsonl"));
}

TEST_CASE("loader: each kind of bad input names file, line and field") {
  const std::string ok_a = row("a.png", "a_s01") + row("a.png", "a_s02");
  expect_error(ok_a + "{not json\n", {"data.jsonl:3", "invalid JSON"});
  expect_error(ok_a + "[1,2]\n", {"data.jsonl:3", "expected a JSON object"});
  expect_error(ok_a + "{\"image_id\":\"b.png\",\"scenario_id\":\"x\",\"mean_rating\":3,\"modality\":\"text\"}\n",
               {"data.jsonl:3", "field 'text'", "missing"});
  expect_error(row("a.png", "a_s01") + row("a.png", "a_s02", "", "t", "5.5"),
               {"data.jsonl:2", "field 'mean_rating'", "outside [1, 5]"});
  expect_error(row("a.png", "a_s01") + row("a.png", "a_s02", "", "t", "0.5"), {"data.jsonl:2", "mean_rating"});
  expect_error(row("a.png", "a_s01") + row("a.png", "a_s02", "", "t", "3", "audio"),
               {"data.jsonl:2", "field 'modality'", "unknown modality 'audio'"});
  expect_error(row("a.png", "a_s01") + row("a.png", "a_s02", "", "   "), {"data.jsonl:2", "field 'text'", "empty text"});
  expect_error(ok_a + row("a.png", "a_s01"), {"data.jsonl:3", "field 'scenario_id'", "duplicate scenario_id 'a_s01'"});
  expect_error(row("zzz.png", "z_s01") + row("zzz.png", "z_s02"), {"data.jsonl:1", "field 'image_id'", "no such image file"});
  expect_error(row("../etc.png", "z_s01"), {"data.jsonl:1", "field 'image_id'"});
  expect_error(row("a.png", "a_s01", ",\"ratings\":[3,9]"), {"data.jsonl:1"});  // duplicate key: last wins -> 9
  expect_error(row("a.png", "a_s01") + row("a.png", "a_s02", "", "t", "\"4\""),
               {"data.jsonl:2", "field 'mean_rating'", "expected a number"});
  expect_error("{\"image_id\":\"a.png\",\"scenarios\":[{\"scenario_id\":\"s1\",\"text\":\"x\",\"mean_rating\":3,"
               "\"modality\":\"both\"},{\"scenario_id\":\"s2\",\"text\":\"x\",\"mean_rating\":3}]}\n",
               {"data.jsonl:1", "scenarios[1]", "field 'modality'", "missing"});
  CHECK_THROWS_WITH_AS(load_mmscale_file("/nonexistent/x.jsonl", "/nonexistent"),
                       doctest::Contains("/nonexistent/x.jsonl"), mms::Error);
}

TEST_CASE("loader: corrupt image file is caught with decode_images") {
  fs::path root = temp_root("corrupt_image");
  write(root / "images" / "a.png", "\x89PNG\r\n\x1a\n truncated");
  write(root / "data.jsonl", row("a.png", "a_s01") + row("a.png", "a_s02"));
  CHECK_NOTHROW(load_mmscale_file((root / "data.jsonl").string(), (root / "images").string()));
  CHECK_THROWS_WITH_AS(load_mmscale_file((root / "data.jsonl").string(), (root / "images").string(),
                                         {.decode_images = true}),
                       doctest::Contains("a.png"), mms::Error);
}

TEST_CASE("loader: skip_bad skips, counts by reason, and drops images with < 2 scenarios") {
  fs::path root = temp_root("skip");
  tiny_png(root / "images" / "a.png");
  tiny_png(root / "images" / "b.png");
  tiny_png(root / "images" / "c.png");
  std::string jsonl = row("a.png", "a_s01") + row("a.png", "a_s02") + row("a.png", "a_s03", "", "t", "7") +
                      "garbage\n" + row("b.png", "b_s01") + row("b.png", "b_s01") +  // duplicate
                      row("c.png", "c_s01", "", "t", "2", "smell") + row("c.png", "c_s02") + row("c.png", "c_s03") +
                      row("missing.png", "m_s01") + row("missing.png", "m_s02") + "\n\n";
  write(root / "data.jsonl", jsonl);
  Dataset d = load_mmscale_file((root / "data.jsonl").string(), (root / "images").string(), {.skip_bad = true});
  REQUIRE(d.images.size() == 2);
  CHECK(d.images[0].image_id == "a.png");
  CHECK(d.images[0].scenarios.size() == 2);
  CHECK(d.images[1].image_id == "c.png");
  CHECK(d.report.images_dropped_few_scenarios == 1);  // b.png: one scenario left
  const auto& by = d.report.skipped.count_by_reason;
  CHECK(by.at("invalid JSON") == 1);
  CHECK(by.at("rating outside [1, 5]") == 1);
  CHECK(by.at("duplicate scenario_id") == 1);
  CHECK(by.at("unknown modality") == 1);
  CHECK(by.at("no such image") == 1);
  CHECK(d.report.skipped.total() == 5);
  CHECK(d.report.summary().find("skipped 5 rows") != std::string::npos);
  CHECK(d.report.rows_read == 10);  // parsed rows; the garbage line is counted above
}

TEST_CASE("loader: fuzzed JSONL lines never crash; errors always name the file") {
  fs::path root = temp_root("fuzz");
  tiny_png(root / "images" / "a.png");
  const std::string base = row("a.png", "a_s01") + row("a.png", "a_s02") +
                           "{\"image_id\":\"a.png\",\"scenarios\":[{\"scenario_id\":\"n1\",\"text\":\"hi\","
                           "\"mean_rating\":2,\"ratings\":[2],\"modality\":\"image\"}]}\n";
  uint32_t state = 99;
  auto next = [&state] { state = state * 1664525u + 1013904223u; return state >> 8; };
  const std::string alphabet = "{}[]\":,0123456789.-eE \\nulltruefalse\xff\xc3";
  int ok = 0, rejected = 0;
  for (int trial = 0; trial < 400; ++trial) {
    std::string text = base;
    const int edits = 1 + static_cast<int>(next() % 4);
    for (int e = 0; e < edits; ++e) {
      size_t at = next() % text.size();
      switch (next() % 3) {
        case 0: text[at] = alphabet[next() % alphabet.size()]; break;
        case 1: text.erase(at, 1 + next() % 8); break;
        default: text.insert(at, 1, alphabet[next() % alphabet.size()]); break;
      }
    }
    write(root / "data.jsonl", text);
    for (bool skip : {false, true}) {
      try {
        Dataset d = load_mmscale_file((root / "data.jsonl").string(), (root / "images").string(), {.skip_bad = skip});
        CHECK(d.report.rows_read >= 0);
        ++ok;
      } catch (const mms::Error& e) {
        CHECK(std::string(e.what()).find("data.jsonl") != std::string::npos);
        ++rejected;
      }
    }
  }
  CHECK(ok + rejected == 800);
  MESSAGE("fuzzed JSONL: ", ok, " loaded, ", rejected, " rejected with a message");
}

// nlohmann stops at a NUL byte: "{row}\0{row}" used to load as one row, the second lost.
TEST_CASE("loader: a NUL byte inside a JSONL line is an error naming FILE:LINE, never a lost row") {
  const std::string a1 = row("a.png", "a_s01"), a2 = row("a.png", "a_s02");
  const std::string joined = a1.substr(0, a1.size() - 1) + std::string(1, '\0') + a2;  // one line
  expect_error(joined, {"data.jsonl:1", "invalid JSON", "NUL byte at column " + std::to_string(a1.size())});
  expect_error(a1 + a2 + "{\"image_id\":\"a.png\"}" + std::string(1, '\0') + "\n", {"data.jsonl:3", "NUL byte"});

  fs::path root = temp_root("nul_skip");
  tiny_png(root / "images" / "a.png");
  write(root / "data.jsonl", a1 + a2 + row("a.png", "a_s03").insert(5, 1, '\0'));
  Dataset d = load_mmscale_file((root / "data.jsonl").string(), (root / "images").string(), {.skip_bad = true});
  REQUIRE(d.images.size() == 1);
  CHECK(d.images[0].scenarios.size() == 2);
  CHECK(d.report.skipped.count_by_reason.at("invalid JSON") == 1);
  REQUIRE(d.report.skipped.examples.size() == 1);
  CHECK(d.report.skipped.examples[0].find("data.jsonl:3: invalid JSON: NUL byte at column 6") != std::string::npos);
}

TEST_CASE("loader: a text of only Unicode spaces is empty text; spaces inside a text are fine") {
  const std::string ok = row("a.png", "a_s01");
  // U+00A0, U+3000, U+2003, U+2028, U+200B (zero width), U+FEFF (BOM), plus ASCII tab.
  for (const std::string blank : {"\xC2\xA0", "\xE3\x80\x80", "\xE2\x80\x83 \xC2\xA0", "\xE2\x80\xA8",
                                  "\xE2\x80\x8B", "\xEF\xBB\xBF\\t"}) {
    CAPTURE(blank);
    expect_error(ok + row("a.png", "a_s02", "", blank), {"data.jsonl:2", "field 'text'", "empty text"});
  }
  fs::path root = temp_root("nbsp_inside");
  tiny_png(root / "images" / "a.png");
  write(root / "data.jsonl", ok + row("a.png", "a_s02", "", "a\xC2\xA0" "child\xE3\x80\x80waits"));
  Dataset d = load_mmscale_file((root / "data.jsonl").string(), (root / "images").string());
  REQUIRE(d.images.size() == 1);
  CHECK(d.images[0].scenarios[1].text == "a\xC2\xA0" "child\xE3\x80\x80waits");
}

// "a.png\u0000evil" was looked up as images/a.png (the OS stops at the NUL): a row
// meant for another file silently took a.png's picture.
TEST_CASE("loader: control characters in image_id or scenario_id are refused with FILE:LINE") {
  expect_error(row("a.png\\u0000evil", "x_s01") + row("a.png\\u0000evil", "x_s02"),
               {"data.jsonl:1", "field 'image_id'", "control character U+0000 at byte 5", "\"a.png\\u0000evil\""});
  expect_error(row("a.png", "a_s01") + row("a.png\\n", "a_s02"),
               {"data.jsonl:2", "field 'image_id'", "control character U+000A at byte 5"});
  expect_error("{\"image_id\":\"a.png\\u0000\",\"scenarios\":[]}\n", {"data.jsonl:1", "field 'image_id'", "U+0000"});
  expect_error(row("a.png", "a_s01") + row("a.png", "a_s\\u007f02"),
               {"data.jsonl:2", "field 'scenario_id'", "control character U+007F at byte 3"});

  fs::path root = temp_root("ctrl_skip");
  tiny_png(root / "images" / "a.png");
  write(root / "data.jsonl", row("a.png", "a_s01") + row("a.png", "a_s02") + row("a.png\\u0000x", "x_s01"));
  Dataset d = load_mmscale_file((root / "data.jsonl").string(), (root / "images").string(), {.skip_bad = true});
  REQUIRE(d.images.size() == 1);
  CHECK(d.images[0].scenarios.size() == 2);
  CHECK(d.report.skipped.count_by_reason.at("control character in id") == 1);
}

TEST_CASE("loader: a context row's scenario naming another image_id is an error naming both ids") {
  auto scenario = [](const std::string& sid, const std::string& extra) {
    return "{\"scenario_id\":\"" + sid + "\",\"text\":\"x\",\"mean_rating\":3,\"modality\":\"both\"" + extra + "}";
  };
  const std::string context = "{\"image_id\":\"a.png\",\"scenarios\":[" + scenario("s1", ",\"image_id\":\"a.png\"") +
                              "," + scenario("s2", ",\"image_id\":\"b.png\"") + "]}\n";
  expect_error(context, {"data.jsonl:1: scenarios[1]: field 'image_id'",
                         "\"b.png\" differs from the row's image_id \"a.png\""});
  expect_error("{\"image_id\":\"a.png\",\"scenarios\":[" + scenario("s1", ",\"image_id\":7") + "]}\n",
               {"data.jsonl:1: scenarios[0]: field 'image_id'", "expected a string"});

  // The same id repeated (or none, or null) is fine; with skip_bad a mismatch is counted.
  fs::path root = temp_root("own_image_id");
  tiny_png(root / "images" / "a.png");
  write(root / "data.jsonl", "{\"image_id\":\"a.png\",\"scenarios\":[" + scenario("s1", ",\"image_id\":\"a.png\"") +
                                 "," + scenario("s2", "") + "," + scenario("s3", ",\"image_id\":null") + "," +
                                 scenario("s4", ",\"image_id\":\"b.png\"") + "]}\n");
  Dataset d = load_mmscale_file((root / "data.jsonl").string(), (root / "images").string(), {.skip_bad = true});
  REQUIRE(d.images.size() == 1);
  CHECK(d.images[0].scenarios.size() == 3);
  CHECK(d.report.skipped.count_by_reason.at("image_id mismatch") == 1);
}

// nlohmann keeps a repeated key's last value: {"mean_rating": 3.5, ..., "mean_rating": 9}
// loaded as 9 with the 3.5 silently gone (or the reverse, whichever came last).
TEST_CASE("loader: a key repeated in any JSON object is an error naming FILE:LINE and the key") {
  const std::string a1 = row("a.png", "a_s01"), a2 = row("a.png", "a_s02");
  expect_error(a1 + row("a.png", "a_s02", ",\"mean_rating\":9"),
               {"data.jsonl:2: invalid JSON: duplicate key \"mean_rating\"", "only the last value would be kept"});
  // Escapes are decoded first: "\u006dean_rating" is "mean_rating".
  expect_error(a1 + a2 + row("a.png", "a_s03", ",\"\\u006dean_rating\":2"), {"data.jsonl:3", "\"mean_rating\""});
  // Nested: inside the second scenario of a context row.
  const std::string context = "{\"image_id\":\"a.png\",\"scenarios\":[{\"scenario_id\":\"s1\",\"text\":\"x\","
                              "\"mean_rating\":3,\"modality\":\"both\"},{\"scenario_id\":\"s2\",\"text\":\"x\","
                              "\"mean_rating\":3,\"modality\":\"both\",\"text\":\"y\"}]}\n";
  expect_error(context, {"data.jsonl:1: invalid JSON: duplicate key \"text\" in scenarios[1]"});

  // The same key in different objects is fine, and the row's values are the ones given.
  fs::path root = temp_root("dup_keys");
  tiny_png(root / "images" / "a.png");
  write(root / "nested.jsonl", "{\"a\":{\"b\":[1,{\"c\":1}],\"c\":2},\"c\":3}\n"
                               "{\"a\":{\"b\":[1,{\"c\":1,\"d\":[],\"c\":2}]}}\n");
  BadRows bad;
  std::vector<JsonlRow> rows = read_jsonl((root / "nested.jsonl").string(), &bad);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].value["a"]["c"] == 2);
  CHECK(rows[0].value["c"] == 3);
  REQUIRE(bad.examples.size() == 1);
  CHECK(bad.examples[0] == (root / "nested.jsonl").string() +
                               ":2: invalid JSON: duplicate key \"c\" in a.b[1] (only the last value would be kept)");

  // skip_bad: counted as invalid JSON like any other malformed line; the rest loads.
  write(root / "data.jsonl", a1 + a2 + row("a.png", "a_s03", ",\"mean_rating\":9") + row("a.png", "a_s04"));
  Dataset d = load_mmscale_file((root / "data.jsonl").string(), (root / "images").string(), {.skip_bad = true});
  REQUIRE(d.images.size() == 1);
  REQUIRE(d.images[0].scenarios.size() == 3);
  CHECK(d.images[0].scenarios[2].scenario_id == "a_s04");
  CHECK(d.images[0].scenarios[2].mean_rating == 3.5);
  CHECK(d.report.skipped.count_by_reason.at("invalid JSON") == 1);
  CHECK(d.report.skipped.total() == 1);
  REQUIRE(d.report.skipped.examples.size() == 1);
  CHECK(d.report.skipped.examples[0].find("data.jsonl:3: invalid JSON: duplicate key \"mean_rating\"") !=
        std::string::npos);
}
