// CLIP tokenizer: normalisation and pre-tokenisation units, then ids equal to HF's on
// the real vocabulary (fixtures from tools/make_tokenizer_fixtures.py), then a tiny
// hand-made vocabulary so the BPE logic is tested even without the real one; the fast
// merge loop against the old one, and examples/tokenize's line loop (compiled in).
#include <doctest/doctest.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <unordered_map>

#include "data/text_normalize.h"
#include "data/tokenizer.h"
#include "data_test_paths.h"
#include "encode_lines.h"
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

namespace {

// gzip-compresses `text` into `path`, as `printf ... | gzip` would.
void write_gzip(const std::filesystem::path& path, const std::string& text) {
  gzFile gz = gzopen(path.string().c_str(), "wb");
  REQUIRE(gz != nullptr);
  REQUIRE(gzwrite(gz, text.data(), static_cast<unsigned>(text.size())) == static_cast<int>(text.size()));
  REQUIRE(gzclose(gz) == Z_OK);
}

std::string load_error(const std::string& path) {
  try {
    ClipTokenizer::load(path);
  } catch (const mms::Error& e) {
    return e.what();
  }
  return "(loaded without an error)";
}

}  // namespace

// Any gzip used to load: `printf garbage | gzip` gave a 514-token vocabulary whose
// <|startoftext|>/<|endoftext|> ids (512/513) silently broke a pretrained model.
TEST_CASE("vocabulary .gz: anything but CLIP's full merge list is refused, naming the file and the count") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / "mms_test_short_gz";
  fs::remove_all(dir);
  fs::create_directories(dir);
  write_gzip(dir / "garbage.gz", "garbage\n");
  std::string msg = load_error((dir / "garbage.gz").string());
  const std::string garbage = (dir / "garbage.gz").string();
  CHECK_MESSAGE(msg.find("bpe vocab: " + garbage + ": found 0 merges after the header") == 0, msg);
  CHECK_MESSAGE(msg.find("needs 48894 (49152 - 256 - 2)") != std::string::npos, msg);
  write_gzip(dir / "three.gz", "#version: 0.2\nh e\nl l\nhe ll\n");
  msg = load_error((dir / "three.gz").string());
  CHECK_MESSAGE(msg.find("three.gz: found 3 merges after the header") != std::string::npos, msg);
  if (std::string real = mms::test::clip_vocab_path(); !real.empty()) {
    // The real file cut to its first 1000 lines (a valid gzip): 999 merges.
    const ClipTokenizer full = ClipTokenizer::load(real);
    CHECK(full.vocab_size() == 49408);
    gzFile gz = gzopen(real.c_str(), "rb");
    REQUIRE(gz != nullptr);
    std::string head;
    char buf[4096];
    for (int n; (n = gzread(gz, buf, sizeof buf)) > 0 && std::count(head.begin(), head.end(), '\n') < 1000;)
      head.append(buf, static_cast<size_t>(n));
    gzclose(gz);
    size_t cut = 0;
    for (int line = 0; line < 1000; ++line) cut = head.find('\n', cut) + 1;
    write_gzip(dir / "head.gz", head.substr(0, cut));
    msg = load_error((dir / "head.gz").string());
    CHECK_MESSAGE(msg.find("head.gz: found 999 merges after the header") != std::string::npos, msg);
  }
  fs::remove_all(dir);
}

namespace {

// The merge loop as it was (a full rescan per merge, O(n^2)): the reference the fast one
// must match symbol for symbol.
class ReferenceBpe {
 public:
  explicit ReferenceBpe(const BpeVocab& vocab) : vocab_(vocab) {
    for (size_t r = 0; r < vocab.merges.size(); ++r)
      rank_.emplace(vocab.merges[r].first + " " + vocab.merges[r].second, static_cast<int32_t>(r));
  }

  std::vector<std::string> operator()(const std::string& piece) const {
    std::vector<std::string> word;
    for (unsigned char byte : piece) word.push_back(bytes_to_unicode()[byte]);
    if (word.empty()) return word;
    word.back() += kEndOfWord;
    while (word.size() > 1) {
      int32_t best = INT32_MAX;
      for (size_t i = 0; i + 1 < word.size(); ++i) {
        auto it = rank_.find(word[i] + " " + word[i + 1]);
        if (it != rank_.end()) best = std::min(best, it->second);
      }
      if (best == INT32_MAX) break;
      const auto& [first, second] = vocab_.merges[best];
      std::vector<std::string> merged;
      for (size_t i = 0; i < word.size();) {
        if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
          merged.push_back(first + second);
          i += 2;
        } else {
          merged.push_back(word[i++]);
        }
      }
      word = std::move(merged);
    }
    return word;
  }

 private:
  const BpeVocab& vocab_;
  std::unordered_map<std::string, int32_t> rank_;
};

struct Lcg {
  uint32_t state;
  uint32_t operator()() {
    state = state * 1664525u + 1013904223u;
    return state >> 8;
  }
};

std::string random_word(Lcg& next, size_t length, const std::string& alphabet) {
  std::string w;
  for (size_t i = 0; i < length; ++i) w.push_back(alphabet[next() % alphabet.size()]);
  return w;
}

// Merges in layers over the first `letters` letters: every pair of letters, each
// bigram followed by a word-final letter, then every pair of bigrams. A long random
// word meets nearly all of them, each a distinct merge: the old loop's worst case (one
// rescan of the word per merge). `scramble` shuffles the ranks, so a merge can create a
// pair ranked below the one being merged, and overlapping pairs ("a a a") compete.
BpeVocab layered_merges(int letters, bool scramble, uint32_t seed) {
  std::vector<std::string> bigrams;
  std::vector<std::pair<std::string, std::string>> merges;
  for (int a = 0; a < letters; ++a)
    for (int b = 0; b < letters; ++b) {
      merges.emplace_back(std::string(1, char('a' + a)), std::string(1, char('a' + b)));
      bigrams.push_back(merges.back().first + merges.back().second);
    }
  for (const std::string& bigram : bigrams)
    for (int c = 0; c < letters; ++c) merges.emplace_back(bigram, std::string(1, char('a' + c)) + kEndOfWord);
  for (const std::string& x : bigrams)
    for (const std::string& y : bigrams) merges.emplace_back(x, y);
  Lcg next{seed};
  if (scramble)
    for (size_t i = merges.size() - 1; i > 0; --i) std::swap(merges[i], merges[next() % (i + 1)]);
  return vocab_from_merges(std::move(merges));
}

}  // namespace

TEST_CASE("bpe: the queue-based merge loop gives the rescanning loop's symbols exactly") {
  for (bool scramble : {false, true}) {
    const BpeVocab vocab = layered_merges(4, scramble, scramble ? 11 : 7);
    const ClipTokenizer tok(vocab);
    const ReferenceBpe reference(vocab);
    Lcg next{scramble ? 5u : 3u};
    int compared = 0, merged_some = 0;
    for (int trial = 0; trial < 400; ++trial) {
      const std::string word = trial % 10 == 0 ? std::string(1 + next() % 50, "abcd"[trial % 4])  // "aaaa..."
                                               : random_word(next, 1 + next() % 400, "abcd");
      CAPTURE(word);
      const std::vector<std::string> want = reference(word);
      CHECK(tok.bpe(word) == want);
      ++compared;
      merged_some += want.size() < word.size();
    }
    CHECK(compared == 400);
    CHECK(merged_some >= 300);  // the vocabulary really merges these words
  }
  if (const ClipTokenizer* real = real_tokenizer()) {
    const ReferenceBpe reference(real->vocab());
    Lcg next{42};
    const std::string letters = "abcdefghijklmnopqrstuvwxyz";
    for (int trial = 0; trial < 80; ++trial) {
      const std::string word = trial < 20 ? std::string(1 + trial * 37, "aeiou"[trial % 5])
                                          : random_word(next, 1 + next() % 1000, trial % 2 ? letters : "etaoinshr");
      CAPTURE(word);
      CHECK(real->bpe(word) == reference(word));
    }
  } else {
    MESSAGE("SKIPPED the real-vocabulary half: real CLIP vocabulary not found");
  }
}

// A 100,000-letter word took 20 s with the real vocabulary (a rescan of the word for
// every merge); the synthetic vocabulary shows the same without it.
TEST_CASE("bpe: a 100k-character word encodes in well under a second") {
  auto check_fast = [](const ClipTokenizer& tok, const std::string& word) {
    const auto start = std::chrono::steady_clock::now();
    const std::vector<int32_t> ids = tok.encode_tokens(word);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    MESSAGE("100k-character word: ", ids.size(), " tokens in ", seconds, " s");
    CHECK(seconds < 2.0);
    CHECK(ids.size() < word.size() * 2 / 3);  // merged, not left as bytes
    CHECK(tok.decode(ids) == word);
    // The context-length path: only the first 75 tokens, the same ones.
    const TokenizedText t = tok.encode(word, 77);
    CHECK(std::vector<int32_t>(t.input_ids.begin() + 1, t.input_ids.end() - 1) ==
          std::vector<int32_t>(ids.begin(), ids.begin() + 75));
  };
  Lcg next{2025};
  // The old loop: several seconds here (some 10,000 distinct merges apply, one rescan each).
  check_fast(ClipTokenizer(layered_merges(10, false, 0)), random_word(next, 100000, "abcdefghij"));
  if (const ClipTokenizer* real = real_tokenizer())
    check_fast(*real, random_word(next, 100000, "abcdefghijklmnopqrstuvwxyz"));
  else
    MESSAGE("SKIPPED the real-vocabulary half: real CLIP vocabulary not found");
}

namespace {

// What encode(text, L) must return: encode(text) cut to L keeping EOS, padded with EOS.
TokenizedText cut_after_encoding(const ClipTokenizer& tok, const std::string& text, int64_t L) {
  const std::vector<int32_t> full = tok.encode(text);
  const size_t keep = std::min(full.size() - 2, static_cast<size_t>(L - 2));
  TokenizedText t;
  t.input_ids.assign(full.begin(), full.begin() + 1 + keep);
  t.input_ids.push_back(tok.eos_id());
  t.attention_mask.assign(t.input_ids.size(), 1);
  t.input_ids.resize(L, tok.pad_id());
  t.attention_mask.resize(L, 0);
  return t;
}

}  // namespace

TEST_CASE("encode with a context length: stops early, yet equals encoding everything then cutting") {
  const std::vector<int64_t> lengths = {2, 3, 4, 5, 8, 16, 33, 77, 200};
  if (const ClipTokenizer* tok = real_tokenizer()) {
    std::ifstream in(mms::test::data_fixture("tokenizer_cases.json"));
    REQUIRE(in);
    const nlohmann::json fixture = nlohmann::json::parse(in);
    int compared = 0;
    for (const auto& c : fixture["cases"]) {
      const std::string text = c["text"];
      CAPTURE(text);
      for (int64_t L : lengths) {
        CAPTURE(L);
        const TokenizedText got = tok->encode(text, L), want = cut_after_encoding(*tok, text, L);
        CHECK(got.input_ids == want.input_ids);
        CHECK(got.attention_mask == want.attention_mask);
        ++compared;
      }
      // And the fixture's own context-77 ids.
      CHECK(tok->encode(text, 77).input_ids == c["ids_77"].get<std::vector<int32_t>>());
    }
    CHECK(compared >= 30 * static_cast<int>(lengths.size()));
  } else {
    MESSAGE("SKIPPED the fixture half: real CLIP vocabulary not found");
  }
  // Texts with special tokens and several words, on a vocabulary that merges a lot.
  const ClipTokenizer tok(layered_merges(4, true, 3));
  Lcg next{77};
  const std::vector<std::string> parts = {"abca", "dd", " ", "  ", "<|endoftext|>", "<|startoftext|>", "b!", "7",
                                          "cab's", "\xC2\xA0", "aaaaaaaa"};
  for (int trial = 0; trial < 300; ++trial) {
    std::string text;
    for (uint32_t k = next() % 30; k > 0; --k) text += parts[next() % parts.size()];
    CAPTURE(text);
    for (int64_t L : lengths) CHECK(tok.encode(text, L).input_ids == cut_after_encoding(tok, text, L).input_ids);
  }
  // A bad byte past the cut is still an error, at its offset in the whole text.
  CHECK_THROWS_WITH_AS(tok.encode("abc abc abc abc<|endoftext|>d\xFF", 3),
                       doctest::Contains("invalid UTF-8 at byte 29"), mms::Error);
}

// examples/tokenize's stdin loop: "text: invalid UTF-8 at byte 3" alone did not say which line.
TEST_CASE("tokenize tool: an error names the stdin line") {
  const ClipTokenizer tok(vocab_from_merges({{"c", "a"}, {"ca", "t</w>"}}));
  std::istringstream in("cat\n\nok \xFF cat\ncat\n");
  std::ostringstream out;
  CHECK_THROWS_WITH_AS(mmtokenize::encode_lines(tok, 6, in, "stdin", out),
                       doctest::Contains("stdin line 3: text: invalid UTF-8 at byte 3"), mms::Error);
  const int32_t cat = tok.vocab().id("cat</w>");
  const int32_t bos = tok.bos_id(), eos = tok.eos_id();
  const nlohmann::json first = {{"input_ids", {bos, cat, eos, eos, eos, eos}}, {"attention_mask", {1, 1, 1, 0, 0, 0}}};
  const nlohmann::json blank = {{"input_ids", {bos, eos, eos, eos, eos, eos}}, {"attention_mask", {1, 1, 0, 0, 0, 0}}};
  CHECK(out.str() == first.dump() + "\n" + blank.dump() + "\n");  // the lines before it were written
  std::ostringstream one;
  CHECK_THROWS_WITH_AS(mmtokenize::encode_text(tok, 6, "\xC3", "text argument 2", one),
                       doctest::Contains("text argument 2: text: invalid UTF-8 at byte 0"), mms::Error);
}
