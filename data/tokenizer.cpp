#include "data/tokenizer.h"

#include <queue>

#include "data/text_normalize.h"
#include "tensor/error.h"

namespace mms::data {

namespace {
constexpr size_t kMaxCachedWords = 1 << 18;  // bounded: cleared when full
}

ClipTokenizer::ClipTokenizer(BpeVocab vocab) : vocab_(std::move(vocab)) {
  bos_id_ = vocab_.id(kStartOfText);
  eos_id_ = vocab_.id(kEndOfText);
  MMS_CHECK(bos_id_ >= 0 && eos_id_ >= 0, "tokenizer: vocabulary lacks ", kStartOfText, " or ", kEndOfText);
  for (size_t r = 0; r < vocab_.merges.size(); ++r)
    merge_rank_.emplace(vocab_.merges[r].first + " " + vocab_.merges[r].second, static_cast<int32_t>(r));
  // The specials map to themselves in the cache, as in OpenAI's tokenizer.
  cache_[kStartOfText] = {bos_id_};
  cache_[kEndOfText] = {eos_id_};
}

ClipTokenizer ClipTokenizer::load(const std::string& path) { return ClipTokenizer(load_bpe_vocab(path)); }

namespace {

// One adjacent pair waiting in the merge queue. Symbols only grow (the left one absorbs
// the right), so equal lengths mean both are still the symbols the pair was made from.
struct PairCandidate {
  int32_t rank;
  int32_t left, right;  // symbol slots
  size_t left_len, right_len;
  // std::priority_queue pops the largest: invert, so the lowest rank, then the leftmost.
  bool operator<(const PairCandidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
};

}  // namespace

std::vector<std::string> ClipTokenizer::bpe(const std::string& piece) const {
  // Symbols: one byte-level character per byte, "</w>" glued to the last one.
  std::vector<std::string> word;
  word.reserve(piece.size());
  for (unsigned char byte : piece) word.push_back(bytes_to_unicode()[byte]);
  if (word.empty()) return word;
  word.back() += kEndOfWord;
  if (word.size() == 1) return word;

  // Merge every occurrence of the lowest-ranked adjacent pair, left to right, and repeat:
  // OpenAI's algorithm. (HF merges one occurrence at a time by rank then position; a
  // merge can only create pairs of higher rank, so both orders give the same result.)
  // Rescanning the word for each merge is quadratic (20 s for a 100k-letter word), so the
  // pairs wait in a queue ordered by (rank, position) over a linked list of symbols:
  // O(n log n). The pairs a merge creates join the queue only once every occurrence of
  // the current rank is merged, exactly as the rescanning loop would see them.
  const auto n = static_cast<int32_t>(word.size());
  std::vector<int32_t> prev(n), next(n);
  for (int32_t i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1;  // n: no next symbol
  }
  std::vector<bool> alive(n, true);
  std::string key;
  auto candidate = [&](int32_t left, int32_t right, std::vector<PairCandidate>& out) {
    key.assign(word[left]).append(" ").append(word[right]);
    auto it = merge_rank_.find(key);
    if (it != merge_rank_.end()) out.push_back({it->second, left, right, word[left].size(), word[right].size()});
  };
  std::vector<PairCandidate> created;
  for (int32_t i = 0; i + 1 < n; ++i) candidate(i, i + 1, created);
  std::priority_queue<PairCandidate> queue(std::less<PairCandidate>(), std::move(created));
  created.clear();
  auto still_adjacent = [&](const PairCandidate& c) {
    return alive[c.left] && alive[c.right] && next[c.left] == c.right && word[c.left].size() == c.left_len &&
           word[c.right].size() == c.right_len;
  };
  while (!queue.empty()) {
    const int32_t rank = queue.top().rank;
    for (; !queue.empty() && queue.top().rank == rank; queue.pop()) {
      const PairCandidate c = queue.top();
      if (!still_adjacent(c)) continue;  // overlapped ("a a a") or changed by an earlier merge
      word[c.left] += word[c.right];
      word[c.right].clear();
      alive[c.right] = false;
      next[c.left] = next[c.right];
      if (next[c.left] < n) prev[next[c.left]] = c.left;
      if (prev[c.left] >= 0) candidate(prev[c.left], c.left, created);
      if (next[c.left] < n) candidate(c.left, next[c.left], created);
    }
    for (const PairCandidate& c : created) queue.push(c);
    created.clear();
  }
  std::vector<std::string> symbols;
  for (int32_t i = 0; i < n; i = next[i]) symbols.push_back(std::move(word[i]));
  return symbols;
}

std::vector<int32_t> ClipTokenizer::encode_piece(const std::string& piece) const {
  {
    std::lock_guard<std::mutex> lock(*cache_mutex_);
    auto it = cache_.find(piece);
    if (it != cache_.end()) return it->second;
  }
  std::vector<int32_t> ids;
  for (const std::string& symbol : bpe(piece)) {
    int32_t id = vocab_.id(symbol);
    ids.push_back(id >= 0 ? id : eos_id_);  // unk_token is <|endoftext|>, as in HF
  }
  std::lock_guard<std::mutex> lock(*cache_mutex_);
  if (cache_.size() >= kMaxCachedWords) {
    cache_.clear();
    cache_[kStartOfText] = {bos_id_};
    cache_[kEndOfText] = {eos_id_};
  }
  cache_.emplace(piece, ids);
  return ids;
}

std::vector<int32_t> ClipTokenizer::encode_tokens(std::string_view text, size_t max_tokens) const {
  // The whole text is checked first, so a bad byte past the cut is still an error (and
  // the offset counts from the text's start, not from a segment's).
  utf8_validate(text);
  std::vector<int32_t> ids;
  // Added special tokens are cut out of the raw text first (HF's added vocabulary),
  // so the text between them is normalised on its own.
  size_t pos = 0;
  while (pos <= text.size() && ids.size() < max_tokens) {
    size_t next = std::string_view::npos;
    int32_t special_id = -1;
    size_t special_len = 0;
    for (auto [token, id] : {std::pair{std::string_view(kStartOfText), bos_id_},
                             std::pair{std::string_view(kEndOfText), eos_id_}}) {
      size_t at = text.find(token, pos);
      if (at < next) {
        next = at;
        special_id = id;
        special_len = token.size();
      }
    }
    std::string_view segment = text.substr(pos, next == std::string_view::npos ? std::string_view::npos : next - pos);
    for (const std::string& piece : clip_pretokenize(clip_normalize(segment))) {
      // Pieces are encoded independently, so the ones past the cut cannot change the
      // tokens before it: stop as soon as enough exist.
      if (ids.size() >= max_tokens) break;
      std::vector<int32_t> piece_ids = encode_piece(piece);
      ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
    }
    if (next == std::string_view::npos) break;
    ids.push_back(special_id);
    pos = next + special_len;
  }
  if (ids.size() > max_tokens) ids.resize(max_tokens);
  return ids;
}

std::vector<int32_t> ClipTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids{bos_id_};
  std::vector<int32_t> tokens = encode_tokens(text);
  ids.insert(ids.end(), tokens.begin(), tokens.end());
  ids.push_back(eos_id_);
  return ids;
}

TokenizedText ClipTokenizer::encode(std::string_view text, int64_t context_length) const {
  MMS_CHECK(context_length >= 2, "tokenizer: context length must be >= 2 (BOS + EOS), got ", context_length);
  // Only the tokens that fit are encoded: a long text costs no more than a short one.
  const std::vector<int32_t> tokens = encode_tokens(text, static_cast<size_t>(context_length - 2));
  TokenizedText out;
  out.input_ids.reserve(context_length);
  out.input_ids.push_back(bos_id_);
  out.input_ids.insert(out.input_ids.end(), tokens.begin(), tokens.end());
  out.input_ids.push_back(eos_id_);
  out.attention_mask.assign(out.input_ids.size(), 1);
  out.input_ids.resize(context_length, pad_id());
  out.attention_mask.resize(context_length, 0);
  return out;
}

std::string ClipTokenizer::decode(const std::vector<int32_t>& ids) const {
  // Inverse byte table: UTF-8 symbol -> byte.
  static const std::unordered_map<std::string, unsigned char> inverse = [] {
    std::unordered_map<std::string, unsigned char> m;
    for (int b = 0; b < 256; ++b) m[bytes_to_unicode()[b]] = static_cast<unsigned char>(b);
    return m;
  }();
  std::string joined;
  for (int32_t id : ids) {
    MMS_CHECK(id >= 0 && id < vocab_size(), "tokenizer: decode: id ", id, " outside [0, ", vocab_size(), ")");
    if (id == bos_id_ || id == eos_id_) continue;
    joined += vocab_.id_to_token[id];
  }
  std::string bytes;
  std::string symbol;
  size_t i = 0;
  const std::string eow = kEndOfWord;
  while (i < joined.size()) {
    if (joined.compare(i, eow.size(), eow) == 0) {
      bytes.push_back(' ');
      i += eow.size();
      continue;
    }
    size_t len = 1;
    unsigned char lead = static_cast<unsigned char>(joined[i]);
    if (lead >= 0xF0) len = 4; else if (lead >= 0xE0) len = 3; else if (lead >= 0xC0) len = 2;
    symbol = joined.substr(i, len);
    auto it = inverse.find(symbol);
    if (it != inverse.end()) bytes.push_back(static_cast<char>(it->second));
    i += len;
  }
  while (!bytes.empty() && bytes.back() == ' ') bytes.pop_back();
  return bytes;
}

}  // namespace mms::data
