#include "data/bpe_trainer.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "data/text_normalize.h"
#include "tensor/error.h"

namespace mms::data {

namespace {

using Symbol = int32_t;
using PairKey = uint64_t;

PairKey pair_key(Symbol a, Symbol b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b); }
Symbol pair_first(PairKey k) { return static_cast<Symbol>(k >> 32); }
Symbol pair_second(PairKey k) { return static_cast<Symbol>(k & 0xffffffffu); }

struct Word {
  std::vector<Symbol> symbols;
  int64_t count = 0;
};

// Symbol strings interned to small ints so the merge loop works on integers.
struct SymbolTable {
  std::vector<std::string> names;
  std::unordered_map<std::string, Symbol> ids;
  Symbol intern(const std::string& s) {
    auto [it, inserted] = ids.emplace(s, static_cast<Symbol>(names.size()));
    if (inserted) names.push_back(s);
    return it->second;
  }
};

}  // namespace

std::vector<std::string> read_corpus_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("bpe trainer: cannot open corpus ", path);
  std::vector<std::string> lines;
  std::string line;
  size_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    try {
      utf8_decode(line);
    } catch (const Error& e) {
      fail("bpe trainer: ", path, ":", line_no, ": ", e.what());
    }
    lines.push_back(std::move(line));
  }
  return lines;
}

BpeVocab train_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& options) {
  const int64_t base = 2 * 256 + 2;
  MMS_CHECK(options.vocab_size >= base, "bpe trainer: vocab size must be >= ", base,
            " (512 byte symbols + 2 specials), got ", options.vocab_size);
  const int64_t max_merges = options.vocab_size - base;

  // Count words (std::map: a deterministic order for everything below).
  std::map<std::string, int64_t> word_counts;
  for (const std::string& text : texts)
    for (const std::string& piece : clip_pretokenize(clip_normalize(text)))
      if (piece != kStartOfText && piece != kEndOfText) ++word_counts[piece];

  SymbolTable table;
  std::vector<Word> words;
  for (const auto& [piece, count] : word_counts) {
    Word w;
    w.count = count;
    for (size_t i = 0; i < piece.size(); ++i) {
      std::string s = bytes_to_unicode()[static_cast<unsigned char>(piece[i])];
      if (i + 1 == piece.size()) s += kEndOfWord;
      w.symbols.push_back(table.intern(s));
    }
    words.push_back(std::move(w));
  }

  // Pair statistics, kept up to date incrementally as merges rewrite words.
  std::unordered_map<PairKey, int64_t> pair_count;
  std::unordered_map<PairKey, std::unordered_set<size_t>> pair_words;
  for (size_t w = 0; w < words.size(); ++w)
    for (size_t i = 0; i + 1 < words[w].symbols.size(); ++i) {
      PairKey k = pair_key(words[w].symbols[i], words[w].symbols[i + 1]);
      pair_count[k] += words[w].count;
      pair_words[k].insert(w);
    }

  // Max-heap with lazy deletion: an entry is live only while its count is current.
  struct Entry {
    int64_t count;
    PairKey key;
  };
  auto worse = [&table](const Entry& x, const Entry& y) {
    if (x.count != y.count) return x.count < y.count;
    const std::string& xa = table.names[pair_first(x.key)];
    const std::string& ya = table.names[pair_first(y.key)];
    if (xa != ya) return xa > ya;
    return table.names[pair_second(x.key)] > table.names[pair_second(y.key)];
  };
  std::priority_queue<Entry, std::vector<Entry>, decltype(worse)> heap(worse);
  for (const auto& [k, c] : pair_count) heap.push({c, k});

  std::vector<std::pair<std::string, std::string>> merges;
  while (static_cast<int64_t>(merges.size()) < max_merges && !heap.empty()) {
    Entry top = heap.top();
    heap.pop();
    auto it = pair_count.find(top.key);
    if (it == pair_count.end() || it->second != top.count) continue;  // stale
    if (top.count < options.min_frequency) break;
    const Symbol a = pair_first(top.key), b = pair_second(top.key);
    const Symbol merged = table.intern(table.names[a] + table.names[b]);
    merges.emplace_back(table.names[a], table.names[b]);

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
      out.reserve(word.symbols.size());
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
  return vocab_from_merges(std::move(merges));
}

}  // namespace mms::data
