// CLIP tokenizer: normalisation and pre-tokenisation units, then ids equal to HF's on
// the real vocabulary (fixtures from tools/make_tokenizer_fixtures.py), then a tiny
// hand-made vocabulary so the BPE logic is tested even without the real one.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data/text_normalize.h"
#include "data/tokenizer.h"
#include "data_test_paths.h"
#include "tensor/error.h"

using namespace mms::data;

namespace {
const ClipTokenizer* real_tokenizer() {
  static std::unique_ptr<ClipTokenizer> tok = []() -> std::unique_ptr<ClipTokenizer> {
    std::string path = mms::test::clip_vocab_path();
    if (path.empty()) return nullptr;
    return std::make_unique<ClipTokenizer>(ClipTokenizer::load(path));
  }();
  return tok.get();
}
}  // namespace

TEST_CASE("normalize: NFC, whitespace runs, lowercase") {
  CHECK(clip_normalize("Hello   World") == "hello world");
  CHECK(clip_normalize("a\t\n\r b") == "a b");
  CHECK(clip_normalize("Cafe\xCC\x81") == "caf\xC3\xA9");           // e + U+0301 -> é
  CHECK(clip_normalize("\xC3\x89T\xC3\x89") == "\xC3\xA9t\xC3\xA9");  // ÉTÉ -> été
  CHECK(clip_normalize("a\xC2\xA0" "b") == "a b");                    // NBSP is \s
  CHECK(clip_normalize("\xC4\xB0") == "i\xCC\x87");                  // İ -> i + U+0307
  CHECK(clip_normalize("") == "");
  CHECK_THROWS_AS(clip_normalize("bad \xFF byte"), mms::Error);
  CHECK_THROWS_AS(clip_normalize("cut \xE6\x97"), mms::Error);
}

TEST_CASE("pretokenize: the CLIP regex alternatives in order") {
  using V = std::vector<std::string>;
  CHECK(clip_pretokenize("you should've done") == V{"you", "should", "'ve", "done"});
  CHECK(clip_pretokenize("room 101!") == V{"room", "1", "0", "1", "!"});
  CHECK(clip_pretokenize("''s x!'s") == V{"''", "s", "x", "!'", "s"});
  CHECK(clip_pretokenize("a<|endoftext|>b") == V{"a", "<|endoftext|>", "b"});
  CHECK(clip_pretokenize("   ").empty());
}

TEST_CASE("tokenizer: required ids on the real CLIP vocabulary") {
  const ClipTokenizer* tok = real_tokenizer();
  if (!tok) {
    MESSAGE("SKIPPED: real CLIP vocabulary not found (../shared/clip or $MMS_CLIP_VOCAB)");
    return;
  }
  CHECK(tok->vocab_size() == 49408);
  CHECK(tok->bos_id() == 49406);
  CHECK(tok->eos_id() == 49407);
  CHECK(tok->encode("a photo of a cat") == std::vector<int32_t>{49406, 320, 1125, 539, 320, 2368, 49407});
  CHECK(tok->encode("You should've done this") == std::vector<int32_t>{49406, 592, 1535, 1200, 1700, 589, 49407});
  CHECK(tok->decode(tok->encode("A photo of a CAT")) == "a photo of a cat");
}

TEST_CASE("tokenizer: every HF reference case, full and at context 77") {
  const ClipTokenizer* tok = real_tokenizer();
  if (!tok) {
    MESSAGE("SKIPPED: real CLIP vocabulary not found (../shared/clip or $MMS_CLIP_VOCAB)");
    return;
  }
  std::ifstream in(mms::test::data_fixture("tokenizer_cases.json"));
  REQUIRE(in);
  nlohmann::json fixture = nlohmann::json::parse(in);
  int passed = 0, total = 0;
  for (const auto& c : fixture["cases"]) {
    const std::string text = c["text"];
    CAPTURE(text);
    ++total;
    auto full = c["ids"].get<std::vector<int32_t>>();
    auto ids77 = c["ids_77"].get<std::vector<int32_t>>();
    auto mask77 = c["mask_77"].get<std::vector<int32_t>>();
    std::vector<int32_t> got = tok->encode(text);
    TokenizedText got77 = tok->encode(text, 77);
    CHECK(got == full);
    CHECK(got77.input_ids == ids77);
    CHECK(got77.attention_mask == mask77);
    if (got == full && got77.input_ids == ids77 && got77.attention_mask == mask77) ++passed;
  }
  MESSAGE("HF reference cases passing: ", passed, "/", total);
  CHECK(total >= 30);
}

TEST_CASE("tokenizer: truncation keeps EOS, padding uses EOS with mask 0") {
  BpeVocab v = vocab_from_merges({{"c", "a"}, {"ca", "t</w>"}});
  ClipTokenizer tok(v);
  const int32_t cat = v.id("cat</w>");
  REQUIRE(cat >= 0);
  CHECK(tok.encode("cat cat") == std::vector<int32_t>{tok.bos_id(), cat, cat, tok.eos_id()});
  TokenizedText t = tok.encode("cat cat cat cat", 4);
  CHECK(t.input_ids == std::vector<int32_t>{tok.bos_id(), cat, cat, tok.eos_id()});
  CHECK(t.attention_mask == std::vector<int32_t>{1, 1, 1, 1});
  TokenizedText p = tok.encode("cat", 6);
  CHECK(p.input_ids == std::vector<int32_t>{tok.bos_id(), cat, tok.eos_id(), tok.eos_id(), tok.eos_id(), tok.eos_id()});
  CHECK(p.attention_mask == std::vector<int32_t>{1, 1, 1, 0, 0, 0});
  TokenizedText e = tok.encode("", 3);
  CHECK(e.input_ids == std::vector<int32_t>{tok.bos_id(), tok.eos_id(), tok.eos_id()});
  CHECK(e.attention_mask == std::vector<int32_t>{1, 1, 0});
  CHECK_THROWS_AS(tok.encode("cat", 1), mms::Error);
  // Unmerged pieces fall back to byte symbols: "cab" -> ca, b</w>.
  CHECK(tok.bpe("cab") == std::vector<std::string>{"ca", "b</w>"});
}

TEST_CASE("tokenizer: HF files round-trip through save and load") {
  BpeVocab v = vocab_from_merges({{"h", "i</w>"}, {"t", "h"}, {"th", "e</w>"}});
  auto dir = std::filesystem::temp_directory_path() / "mms_test_tok_roundtrip";
  save_hf_bpe(v, dir.string());
  ClipTokenizer a(v);
  ClipTokenizer b = ClipTokenizer::load(dir.string());
  CHECK(b.vocab_size() == a.vocab_size());
  CHECK(b.encode("hi the thing") == a.encode("hi the thing"));
  CHECK(b.decode(b.encode("hi the thing")) == "hi the thing");
  std::filesystem::remove_all(dir);
}

TEST_CASE("tokenizer fuzz: random bytes and code points never crash; bad UTF-8 is a clear error") {
  BpeVocab v = vocab_from_merges({{"t", "h"}, {"th", "e</w>"}, {"a", "n"}});
  ClipTokenizer tok(v);
  uint32_t state = 2024;
  auto next = [&state] { state = state * 1664525u + 1013904223u; return state >> 8; };
  int ok = 0, rejected = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    std::string text;
    const int n = static_cast<int>(next() % 40);
    if (trial % 2 == 0) {
      for (int i = 0; i < n; ++i) text.push_back(static_cast<char>(next() & 0xff));  // arbitrary bytes
    } else {
      for (int i = 0; i < n; ++i) {  // valid code points across planes (no surrogates)
        int32_t cp = static_cast<int32_t>(next() % 0x30000);
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
        utf8_append(text, cp);
      }
    }
    try {
      TokenizedText t = tok.encode(text, 16);
      CHECK(t.input_ids.size() == 16);
      CHECK(t.input_ids[0] == tok.bos_id());
      for (int32_t id : t.input_ids) CHECK((id >= 0 && id < tok.vocab_size()));
      ++ok;
    } catch (const mms::Error& e) {
      CHECK(std::string(e.what()).find("invalid UTF-8") != std::string::npos);
      ++rejected;
    }
  }
  CHECK(ok >= 1000);  // every valid-UTF-8 trial
  MESSAGE("tokenizer fuzz: ", ok, " encoded, ", rejected, " rejected as invalid UTF-8");
}

TEST_CASE("vocabulary files: corrupt inputs are rejected naming the file (and line)") {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / "mms_test_bad_vocab";
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name, std::ios::binary) << text;
  };
  auto expect = [&](const std::string& path, std::vector<std::string> fragments) {
    try {
      ClipTokenizer::load(path);
      FAIL("expected an error for ", path);
    } catch (const mms::Error& e) {
      for (const auto& f : fragments)
        CHECK_MESSAGE(std::string(e.what()).find(f) != std::string::npos, "'", f, "' not in: ", e.what());
    }
  };
  BpeVocab good = vocab_from_merges({{"a", "b"}});
  save_hf_bpe(good, dir.string());
  CHECK_NOTHROW(ClipTokenizer::load(dir.string()));
  write("merges.txt", "#version: 0.2\na b\nthree parts here\n");
  expect(dir.string(), {"merges.txt:3", "two symbols"});
  write("merges.txt", "#version: 0.2\nq z\n");
  expect(dir.string(), {"merges.txt:2", "missing from"});
  write("vocab.json", "{\"a\": 0, \"b\": ");
  expect(dir.string(), {"vocab.json", "invalid JSON"});
  write("vocab.json", "{\"a\": 0, \"b\": 0}");
  expect(dir.string(), {"vocab.json", "used twice"});
  write("vocab.json", "{\"a\": \"zero\"}");
  expect(dir.string(), {"vocab.json", "must be an integer"});
  write("vocab.json", "[1, 2]");
  expect(dir.string(), {"vocab.json", "expected a non-empty object"});
  write("broken.gz", "\x1f\x8b\x08\x00garbage that is not deflate");
  expect((dir / "broken.gz").string(), {"broken.gz"});
  write("plain.txt", "hello");
  expect((dir / "plain.txt").string(), {"plain.txt"});
  expect((dir / "absent.gz").string(), {"absent.gz"});
  if (std::string real = mms::test::clip_vocab_path(); !real.empty()) {
    // A truncated copy of the real gzip is rejected, never read as a shorter vocabulary.
    std::ifstream in(real, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (size_t cut : {size_t(10), size_t(100), bytes.size() / 2, bytes.size() - 5}) {
      write("cut.gz", bytes.substr(0, cut));
      CHECK_THROWS_WITH_AS(ClipTokenizer::load((dir / "cut.gz").string()), doctest::Contains("cut.gz"),
                           mms::Error);
    }
  }
  fs::remove_all(dir);
}
