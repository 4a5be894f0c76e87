// A byte-level BPE vocabulary: token strings <-> ids and the ranked merge list.
//
// Two on-disk forms are read:
//   * HF:     vocab.json ({"token": id}) + merges.txt ("#version" header, "a b" lines);
//   * OpenAI: bpe_simple_vocab_16e6.txt.gz (header line, then merges; the first 48,894
//             are used, and a file with fewer is refused, so the .gz form always gives
//             CLIP's 49,408 ids; the vocabulary is built the way OpenAI's SimpleTokenizer does:
//             the 256 byte symbols, the same with "</w>", each merge joined, then
//             <|startoftext|> and <|endoftext|>).
// and the HF form is written (by the trainer), so every vocabulary round-trips.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mms::data {

inline constexpr const char* kStartOfText = "<|startoftext|>";
inline constexpr const char* kEndOfText = "<|endoftext|>";
inline constexpr const char* kEndOfWord = "</w>";

// GPT-2/CLIP's reversible byte -> printable code point table, as UTF-8 strings.
const std::vector<std::string>& bytes_to_unicode();
// The 256 symbols in OpenAI's dict order (printable bytes first), i.e. vocab ids 0..255.
const std::vector<std::string>& byte_symbols_in_vocab_order();

struct BpeVocab {
  std::vector<std::string> id_to_token;
  std::unordered_map<std::string, int32_t> token_to_id;
  std::vector<std::pair<std::string, std::string>> merges;  // rank = index

  int32_t id(const std::string& token) const;  // -1 when absent
  size_t size() const { return id_to_token.size(); }
};

// Builds the OpenAI layout from a merge list (bytes, bytes</w>, merges, specials).
BpeVocab vocab_from_merges(std::vector<std::pair<std::string, std::string>> merges);

// `path` is a .gz (OpenAI), a directory holding vocab.json + merges.txt, or a
// vocab.json with merges.txt beside it. Errors name the file and line.
BpeVocab load_bpe_vocab(const std::string& path);
BpeVocab load_openai_bpe_gz(const std::string& gz_path);
BpeVocab load_hf_bpe(const std::string& vocab_json, const std::string& merges_txt);

// Writes DIR/vocab.json and DIR/merges.txt (creating DIR), readable by HF's CLIPTokenizer.
void save_hf_bpe(const BpeVocab& vocab, const std::string& dir);

}  // namespace mms::data
