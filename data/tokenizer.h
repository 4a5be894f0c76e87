// CLIP's byte-level BPE tokenizer, giving the same ids as transformers' CLIPTokenizer
// (the `tokenizers` backend): added special tokens split out of the raw text, then
// clip_normalize + clip_pretokenize (data/text_normalize.h), each piece mapped through
// bytes_to_unicode, "</w>" on its last symbol, merges applied lowest rank first,
// wrapped in <|startoftext|> ... <|endoftext|>.
//
// Thread-safe: encode() may be called from many threads (the word cache is locked).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "data/bpe_vocab.h"

namespace mms::data {

// One text after truncation + padding: both of length context_length.
struct TokenizedText {
  std::vector<int32_t> input_ids;
  std::vector<int32_t> attention_mask;  // 1 for real tokens (BOS..EOS), 0 for padding
};

class ClipTokenizer {
 public:
  explicit ClipTokenizer(BpeVocab vocab);
  // A .gz (OpenAI), a directory with vocab.json + merges.txt, or a vocab.json path.
  static ClipTokenizer load(const std::string& path);

  // BOS, the text's tokens, EOS; no truncation.
  std::vector<int32_t> encode(std::string_view text) const;
  // Truncated to context_length keeping EOS last, padded with pad_id (= EOS), as HF's
  // tokenizer(text, max_length=L, truncation=True, padding="max_length").
  TokenizedText encode(std::string_view text, int64_t context_length) const;
  // Token ids of one text without BOS/EOS: the first max_tokens of them, the same as
  // encoding everything and cutting, but the words past the cut are never encoded.
  std::vector<int32_t> encode_tokens(std::string_view text, size_t max_tokens = SIZE_MAX) const;
  // Lowercased, whitespace-normalised text back from ids (specials dropped).
  std::string decode(const std::vector<int32_t>& ids) const;

  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }
  int32_t pad_id() const { return eos_id_; }
  int64_t vocab_size() const { return static_cast<int64_t>(vocab_.size()); }
  const BpeVocab& vocab() const { return vocab_; }

  // The BPE symbols of one pre-tokenised piece (for tests and the trainer).
  std::vector<std::string> bpe(const std::string& piece) const;

 private:
  std::vector<int32_t> encode_piece(const std::string& piece) const;

  BpeVocab vocab_;
  std::unordered_map<std::string, int32_t> merge_rank_;  // "a b" -> rank
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  mutable std::unique_ptr<std::mutex> cache_mutex_ = std::make_unique<std::mutex>();
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace mms::data
