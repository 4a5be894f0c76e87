// BPE trainer: the merge order on a corpus worked out by hand, determinism, the size
// limit, and that a trained vocabulary round-trips through vocab.json + merges.txt.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "data/bpe_trainer.h"
#include "data/tokenizer.h"
#include "tensor/error.h"

using namespace mms::data;
using Merges = std::vector<std::pair<std::string, std::string>>;

TEST_CASE("trainer: merges by frequency, ties to the smallest pair, min frequency") {
  // the x3, cat x2, hat x1. Round 1: (a,t</w>)=3, (h,e</w>)=3, (t,h)=3 tie -> "a" first.
  BpeVocab v = train_bpe({"the cat", "The hat", "the CAT"}, {.vocab_size = 600, .min_frequency = 2});
  CHECK(v.merges == Merges{{"a", "t</w>"}, {"h", "e</w>"}, {"t", "he</w>"}, {"c", "at</w>"}});
  CHECK(v.size() == 512 + 4 + 2);
  CHECK(v.id("<|startoftext|>") == 516);
  CHECK(v.id("<|endoftext|>") == 517);
  ClipTokenizer tok(v);
  CHECK(tok.encode("the cat") == std::vector<int32_t>{516, v.id("the</w>"), v.id("cat</w>"), 517});
  CHECK(tok.bpe("hat") == std::vector<std::string>{"h", "at</w>"});
}

TEST_CASE("trainer: vocab size caps the merges; deterministic") {
  std::vector<std::string> corpus;
  for (int i = 0; i < 50; ++i)
    corpus.push_back("a person helps a child number " + std::to_string(i) + " while another steals bread");
  BpeVocab a = train_bpe(corpus, {.vocab_size = 530, .min_frequency = 2});
  BpeVocab b = train_bpe(corpus, {.vocab_size = 530, .min_frequency = 2});
  CHECK(a.merges.size() == 530 - 514);
  CHECK(a.merges == b.merges);
  CHECK(a.id_to_token == b.id_to_token);
  CHECK_THROWS_AS(train_bpe(corpus, {.vocab_size = 100}), mms::Error);
}

TEST_CASE("trainer: saved files load back and encode identically") {
  std::vector<std::string> corpus{"someone returns a lost wallet", "someone steals a wallet",
                                  "a kind stranger returns the wallet"};
  BpeVocab v = train_bpe(corpus, {.vocab_size = 560, .min_frequency = 1});
  auto dir = std::filesystem::temp_directory_path() / "mms_test_trainer_roundtrip";
  save_hf_bpe(v, dir.string());
  ClipTokenizer original(v);
  ClipTokenizer loaded = ClipTokenizer::load(dir.string());
  for (const auto& text : corpus) CHECK(loaded.encode(text) == original.encode(text));
  CHECK(loaded.encode("someone returns a lost wallet").size() < 10);  // merged to whole words
  std::filesystem::remove_all(dir);
}

TEST_CASE("trainer: corpus file errors name the file and line") {
  auto path = std::filesystem::temp_directory_path() / "mms_test_bad_corpus.txt";
  {
    std::ofstream out(path, std::ios::binary);
    out << "fine line\n\nbad \xC3 line\n";
  }
  try {
    read_corpus_lines(path.string());
    FAIL("expected an error");
  } catch (const mms::Error& e) {
    CHECK(std::string(e.what()).find(path.string() + ":3") != std::string::npos);
  }
  CHECK_THROWS_AS(read_corpus_lines("/nonexistent/corpus.txt"), mms::Error);
  std::filesystem::remove(path);
}
