#include "data/tokenizer.h"

#include <climits>

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

std::vector<std::string> ClipTokenizer::bpe(const std::string& piece) const {
  // Symbols: one byte-level character per byte, "</w>" glued to the last one.
  std::vector<std::string> word;
  word.reserve(piece.size());
  for (unsigned char byte : piece) word.push_back(bytes_to_unicode()[byte]);
  if (word.empty()) return word;
  word.back() += kEndOfWord;
  // Repeatedly merge every occurrence of the lowest-ranked adjacent pair. (HF merges one
  // occurrence at a time by rank then position; a merge can only create pairs of higher
  // rank, so both orders give the same result.)
  std::string key;
  while (word.size() > 1) {
    int32_t best_rank = INT32_MAX;
    size_t best_at = 0;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      key.assign(word[i]).append(" ").append(word[i + 1]);
      auto it = merge_rank_.find(key);
      if (it != merge_rank_.end() && it->second < best_rank) {
        best_rank = it->second;
        best_at = i;
      }
    }
    if (best_rank == INT32_MAX) break;
    const std::string first = word[best_at], second = word[best_at + 1];
    std::vector<std::string> merged;
    merged.reserve(word.size());
    for (size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
        merged.push_back(first + second);
        i += 2;
      } else {
        merged.push_back(std::move(word[i]));
        i += 1;
      }
    }
    word = std::move(merged);
  }
  return word;
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

std::vector<int32_t> ClipTokenizer::encode_tokens(std::string_view text) const {
  std::vector<int32_t> ids;
  // Added special tokens are cut out of the raw text first (HF's added vocabulary),
  // so the text between them is normalised on its own.
  size_t pos = 0;
  while (pos <= text.size()) {
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
      std::vector<int32_t> piece_ids = encode_piece(piece);
      ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
    }
    if (next == std::string_view::npos) break;
    ids.push_back(special_id);
    pos = next + special_len;
  }
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
  std::vector<int32_t> tokens = encode_tokens(text);
  const size_t keep = std::min(tokens.size(), static_cast<size_t>(context_length - 2));
  TokenizedText out;
  out.input_ids.reserve(context_length);
  out.input_ids.push_back(bos_id_);
  out.input_ids.insert(out.input_ids.end(), tokens.begin(), tokens.begin() + keep);
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
