// BPE trainer: the merge order on a corpus worked out by hand, determinism, the size
// limit, that a trained vocabulary round-trips through vocab.json + merges.txt, that
// the merges equal those of the original whole-word rescan (kept below as the
// reference) on varied corpora, and that one very long word trains quickly.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <queue>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include "data/batching.h"
#include "data/bpe_trainer.h"
#include "data/mmscale_dataset.h"
#include "data/synthetic.h"
#include "data/text_normalize.h"
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

namespace {

// The trainer as it was before merges updated only the neighbours of merged positions:
// every merge rewrites each word holding the pair in full. Kept verbatim (bar names) as
// the oracle, since the default fine-tune's vocabulary, and so its published results,
// depend on the exact merge list.
Merges reference_train_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& options) {
  using Symbol = int32_t;
  using PairKey = uint64_t;
  auto pair_key = [](Symbol a, Symbol b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b); };
  auto pair_first = [](PairKey k) { return static_cast<Symbol>(k >> 32); };
  auto pair_second = [](PairKey k) { return static_cast<Symbol>(k & 0xffffffffu); };
  struct Word {
    std::vector<Symbol> symbols;
    int64_t count = 0;
  };
  std::vector<std::string> names;
  std::unordered_map<std::string, Symbol> ids;
  auto intern = [&](const std::string& s) {
    auto [it, inserted] = ids.emplace(s, static_cast<Symbol>(names.size()));
    if (inserted) names.push_back(s);
    return it->second;
  };
  const int64_t max_merges = options.vocab_size - (2 * 256 + 2);

  std::map<std::string, int64_t> word_counts;
  for (const std::string& text : texts)
    for (const std::string& piece : clip_pretokenize(clip_normalize(text)))
      if (piece != kStartOfText && piece != kEndOfText) ++word_counts[piece];
  std::vector<Word> words;
  for (const auto& [piece, count] : word_counts) {
    Word w;
    w.count = count;
    for (size_t i = 0; i < piece.size(); ++i) {
      std::string s = bytes_to_unicode()[static_cast<unsigned char>(piece[i])];
      if (i + 1 == piece.size()) s += kEndOfWord;
      w.symbols.push_back(intern(s));
    }
    words.push_back(std::move(w));
  }
  std::unordered_map<PairKey, int64_t> pair_count;
  std::unordered_map<PairKey, std::unordered_set<size_t>> pair_words;
  for (size_t w = 0; w < words.size(); ++w)
    for (size_t i = 0; i + 1 < words[w].symbols.size(); ++i) {
      PairKey k = pair_key(words[w].symbols[i], words[w].symbols[i + 1]);
      pair_count[k] += words[w].count;
      pair_words[k].insert(w);
    }
  struct Entry {
    int64_t count;
    PairKey key;
  };
  auto worse = [&](const Entry& x, const Entry& y) {
    if (x.count != y.count) return x.count < y.count;
    const std::string& xa = names[pair_first(x.key)];
    const std::string& ya = names[pair_first(y.key)];
    if (xa != ya) return xa > ya;
    return names[pair_second(x.key)] > names[pair_second(y.key)];
  };
  std::priority_queue<Entry, std::vector<Entry>, decltype(worse)> heap(worse);
  for (const auto& [k, c] : pair_count) heap.push({c, k});

  Merges merges;
  while (static_cast<int64_t>(merges.size()) < max_merges && !heap.empty()) {
    Entry top = heap.top();
    heap.pop();
    auto it = pair_count.find(top.key);
    if (it == pair_count.end() || it->second != top.count) continue;
    if (top.count < options.min_frequency) break;
    const Symbol a = pair_first(top.key), b = pair_second(top.key);
    const Symbol merged = intern(names[a] + names[b]);
    merges.emplace_back(names[a], names[b]);
    std::vector<size_t> affected(pair_words[top.key].begin(), pair_words[top.key].end());
    std::sort(affected.begin(), affected.end());
    std::unordered_map<PairKey, int64_t> changed;
    for (size_t w : affected) {
      Word& word = words[w];
      for (size_t i = 0; i + 1 < word.symbols.size(); ++i) {
        PairKey k = pair_key(word.symbols[i], word.symbols[i + 1]);
        pair_count[k] -= word.count;
        changed[k] -= word.count;
        pair_words[k].erase(w);
      }
      std::vector<Symbol> out;
      for (size_t i = 0; i < word.symbols.size();) {
        if (i + 1 < word.symbols.size() && word.symbols[i] == a && word.symbols[i + 1] == b) {
          out.push_back(merged);
          i += 2;
        } else {
          out.push_back(word.symbols[i++]);
        }
      }
      word.symbols = std::move(out);
      for (size_t i = 0; i + 1 < word.symbols.size(); ++i) {
        PairKey k = pair_key(word.symbols[i], word.symbols[i + 1]);
        pair_count[k] += word.count;
        changed[k] += word.count;
        pair_words[k].insert(w);
      }
    }
    for (const auto& [k, delta] : changed) {
      if (delta == 0) continue;
      if (pair_count[k] <= 0) {
        pair_count.erase(k);
        pair_words.erase(k);
      } else {
        heap.push({pair_count[k], k});
      }
    }
  }
  return merges;
}

// `n` letters drawn from `alphabet` (raw mt19937 output: the same on every platform).
std::string random_letters(std::mt19937& rng, size_t n, const std::string& alphabet) {
  std::string s;
  for (size_t i = 0; i < n; ++i) s += alphabet[rng() % alphabet.size()];
  return s;
}

// Lines of words drawn with repeats from a small vocabulary of random words, so many
// pairs tie in count and the tie-break decides most merges.
std::vector<std::string> repeated_words_corpus(uint32_t seed, const std::string& alphabet) {
  std::mt19937 rng(seed);
  std::vector<std::string> vocab;
  for (int i = 0; i < 120; ++i) vocab.push_back(random_letters(rng, 1 + rng() % 8, alphabet));
  std::vector<std::string> lines;
  for (int i = 0; i < 400; ++i) {
    std::string line;
    for (uint32_t k = 0, n = 1 + rng() % 10; k < n; ++k) line += vocab[rng() % vocab.size()] + " ";
    lines.push_back(line);
  }
  return lines;
}

std::vector<std::string> synthetic_train_texts() {
  auto root = std::filesystem::temp_directory_path() / "mms_test_trainer_synthetic";
  std::filesystem::remove_all(root);
  write_synthetic_dataset(root.string());  // the defaults the fine-tune's quick start uses
  std::vector<std::string> texts = dataset_texts(load_mmscale_split(root.string(), "train"));
  std::filesystem::remove_all(root);
  return texts;
}

}  // namespace

TEST_CASE("trainer: merges identical to the whole-word rescan on varied corpora") {
  std::mt19937 rng(5);
  std::map<std::string, std::vector<std::string>> corpora;
  corpora["repeated words"] = repeated_words_corpus(1, "abcde");
  corpora["two letters, many ties"] = {};
  for (int i = 0; i < 150; ++i) corpora["two letters, many ties"].push_back(random_letters(rng, 6, "ab"));
  // Overlapping pairs ("a a a" -> "aa a") and alternations ("abab").
  for (int i = 0; i < 200; ++i)
    corpora["runs"].push_back(std::string(1 + rng() % 25, "ab"[rng() % 2]) + " abab" +
                              std::string(rng() % 6, 'b') + " " + std::string(1 + rng() % 9, 'a'));
  // Multi-byte UTF-8: the byte symbols' names (bytes_to_unicode) sort differently from
  // the bytes themselves, so the tie-break by name is exercised.
  const std::vector<std::string> pieces{"\xC3\xA9t\xC3\xA9", "\xD0\xB4\xD0\xB0", "\xE4\xB8\xAD\xE6\x96\x87",
                                        "\xF0\x9F\x98\x80\xF0\x9F\x98\x80", "na\xC3\xAFve", "\xC5\x93uvre",
                                        "it's", "42", "!!", "stra\xC3\x9F" "e"};
  for (int i = 0; i < 300; ++i) {
    std::string line;
    for (uint32_t k = 0, n = 1 + rng() % 6; k < n; ++k) line += pieces[rng() % pieces.size()] + " ";
    corpora["unicode"].push_back(line);
  }
  corpora["long word"] = {"a person helps a child", random_letters(rng, 3000, "abcdefghij"), "someone helps"};
  corpora["synthetic train split"] = synthetic_train_texts();

  for (const auto& [name, texts] : corpora) {
    for (BpeTrainOptions options : {BpeTrainOptions{.vocab_size = 530, .min_frequency = 2},
                                    BpeTrainOptions{.vocab_size = 600, .min_frequency = 3},
                                    BpeTrainOptions{.vocab_size = 4096, .min_frequency = 2},
                                    BpeTrainOptions{.vocab_size = 9000, .min_frequency = 1}}) {
      CAPTURE(name);
      CAPTURE(options.vocab_size);
      CAPTURE(options.min_frequency);
      const Merges expected = reference_train_bpe(texts, options);
      const BpeVocab got = train_bpe(texts, options);
      CHECK(expected.size() >= 16);  // every corpus makes real merges under every setting
      CHECK(got.merges.size() == expected.size());
      CHECK(got.merges == expected);
      CHECK(got.id_to_token == vocab_from_merges(expected).id_to_token);
    }
  }
  // The fine-tune's own setting (4096, 2) on the synthetic texts: merges it really makes.
  CHECK(reference_train_bpe(corpora["synthetic train split"], {}).size() > 100);
}

TEST_CASE("trainer: a 100k-letter word trains in well under the old minutes") {
  std::mt19937 rng(3);
  const std::string word = random_letters(rng, 100000, "abcdefghij");
  // The first merge by hand: the most frequent adjacent pair, ties to the smaller pair.
  std::map<std::pair<std::string, std::string>, int64_t> counts;
  for (size_t i = 0; i + 1 < word.size(); ++i)
    ++counts[{word.substr(i, 1), word.substr(i + 1, 1) + (i + 2 == word.size() ? "</w>" : "")}];
  std::pair<std::string, std::string> best;
  int64_t best_count = 0;
  for (const auto& [pair, count] : counts)  // map order: the first maximum is the smallest pair
    if (count > best_count) best = pair, best_count = count;

  const auto start = std::chrono::steady_clock::now();
  const BpeVocab v = train_bpe({word}, {.vocab_size = 4096, .min_frequency = 2});
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  MESSAGE("100k-letter word, 3582 merges: ", seconds, " s");
  CHECK(seconds < 5.0);  // the whole-word rescan took over 3 minutes
  REQUIRE(v.merges.size() == 4096 - 514);
  CHECK(v.merges[0] == best);
  const std::vector<std::string> tokens = ClipTokenizer(v).bpe(word);
  std::string joined;
  for (const std::string& t : tokens) joined += t;
  CHECK(joined == word + "</w>");
  CHECK(tokens.size() < word.size() / 3);  // the merges really compress it
}
