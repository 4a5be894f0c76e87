#include "data/bpe_trainer.h"

#include <algorithm>
#include <climits>
#include <fstream>
#include <map>
#include <queue>
#include <unordered_map>

#include "data/text_normalize.h"
#include "tensor/error.h"

namespace mms::data {

namespace {

using Symbol = int32_t;
using PairKey = uint64_t;

PairKey pair_key(Symbol a, Symbol b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b); }
Symbol pair_first(PairKey k) { return static_cast<Symbol>(k >> 32); }
Symbol pair_second(PairKey k) { return static_cast<Symbol>(k & 0xffffffffu); }

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

using Node = int32_t;
constexpr Node kNone = -1;
constexpr Symbol kDead = -1;  // a node merged into its left neighbour

// Every distinct word's symbols as one array of nodes, each word a doubly linked list
// over its own slice. A merge then touches only the two nodes it joins and their
// neighbours: rewriting whole words per merge made training quadratic in a word's
// length (a 100k-letter word took minutes).
struct Corpus {
  std::vector<Symbol> symbol;  // kDead once merged away
  std::vector<Node> prev, next;  // kNone at a word's ends
  std::vector<int64_t> weight;   // how often the node's word occurs in the texts
};

// Where each pair starts (its left node). Entries go stale as merges rewrite nodes and
// are checked when used rather than removed, so an update is a push_back.
using PairPositions = std::unordered_map<PairKey, std::vector<Node>>;
using PairCounts = std::unordered_map<PairKey, int64_t>;

// Words as the tokenizer will see them, in std::map order (the order only fixes node
// numbering; the merges depend on counts alone).
Corpus build_corpus(const std::map<std::string, int64_t>& word_counts, SymbolTable& table) {
  Corpus c;
  for (const auto& [piece, count] : word_counts) {
    MMS_CHECK(c.symbol.size() + piece.size() < static_cast<size_t>(INT32_MAX),
              "bpe trainer: corpus too large (over 2^31 bytes of distinct words)");
    const Node first = static_cast<Node>(c.symbol.size());
    for (size_t i = 0; i < piece.size(); ++i) {
      std::string s = bytes_to_unicode()[static_cast<unsigned char>(piece[i])];
      if (i + 1 == piece.size()) s += kEndOfWord;
      const Node n = static_cast<Node>(c.symbol.size());
      c.symbol.push_back(table.intern(s));
      c.prev.push_back(n == first ? kNone : n - 1);
      c.next.push_back(i + 1 == piece.size() ? kNone : n + 1);
      c.weight.push_back(count);
    }
  }
  return c;
}

void count_pairs(const Corpus& c, PairCounts& counts, PairPositions& positions) {
  for (Node n = 0; n < static_cast<Node>(c.symbol.size()); ++n) {
    if (c.next[n] == kNone) continue;
    const PairKey k = pair_key(c.symbol[n], c.symbol[c.next[n]]);
    counts[k] += c.weight[n];
    positions[k].push_back(n);
  }
}

// Replaces every (a, b) by `merged`, left to right within each word as a rescan would
// ("a a a" -> "aa a"), and returns each pair's net change in count. Only pairs next to a
// merged position change, so the cost is proportional to the occurrences of (a, b).
std::unordered_map<PairKey, int64_t> apply_merge(Corpus& c, PairPositions& positions, Symbol a, Symbol b,
                                                 Symbol merged) {
  std::unordered_map<PairKey, int64_t> changed;
  auto add = [&](Node left, Symbol x, Symbol y, int64_t delta) {
    const PairKey k = pair_key(x, y);
    changed[k] += delta;
    if (delta > 0) positions[k].push_back(left);
  };
  std::vector<Node> starts = std::move(positions[pair_key(a, b)]);
  positions.erase(pair_key(a, b));
  // Node order is word order, then position in the word: the left-to-right scan.
  std::sort(starts.begin(), starts.end());
  for (Node p : starts) {
    // Stale entries, and an overlapping "a a" whose left node the previous merge
    // consumed, fail this check; a repeated entry fails it once p holds `merged`.
    if (c.symbol[p] != a) continue;
    const Node q = c.next[p];
    if (q == kNone || c.symbol[q] != b) continue;
    const Node l = c.prev[p], r = c.next[q];
    const int64_t w = c.weight[p];
    add(p, a, b, -w);
    if (l != kNone) {
      add(l, c.symbol[l], a, -w);
      add(l, c.symbol[l], merged, w);
    }
    if (r != kNone) {
      add(q, b, c.symbol[r], -w);
      add(p, merged, c.symbol[r], w);
      c.prev[r] = p;
    }
    c.symbol[p] = merged;
    c.next[p] = r;
    c.symbol[q] = kDead;
    c.prev[q] = c.next[q] = kNone;
  }
  return changed;
}

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
  Corpus corpus = build_corpus(word_counts, table);
  // Pair statistics, kept up to date incrementally as merges rewrite words.
  PairCounts pair_count;
  PairPositions pair_positions;
  count_pairs(corpus, pair_count, pair_positions);

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

    const std::unordered_map<PairKey, int64_t> changed = apply_merge(corpus, pair_positions, a, b, merged);
    for (const auto& [k, delta] : changed) {
      if (delta == 0) continue;
      int64_t& count = pair_count[k];
      count += delta;
      if (count <= 0) {
        pair_count.erase(k);
        pair_positions.erase(k);  // every entry left is stale
      } else {
        heap.push({count, k});
      }
    }
  }
  return vocab_from_merges(std::move(merges));
}

}  // namespace mms::data
