// Trains a CLIP-style byte-level BPE vocabulary on a text corpus, so the built-in
// default needs no download. The result has the OpenAI layout (256 byte symbols, the
// same with "</w>", merges in rank order, <|startoftext|>, <|endoftext|>) and is saved
// with save_hf_bpe() as vocab.json + merges.txt.
//
// Words are produced exactly as the tokenizer will see them (clip_normalize +
// clip_pretokenize), so every merge learnt is one the tokenizer can apply.
// Deterministic: the most frequent pair wins, ties go to the lexicographically
// smallest (first symbol, second symbol), compared as the symbols' strings. A merge
// updates only the neighbours of the positions it joins, so its cost follows the
// pair's occurrences, not the length of the words holding it: one 100k-letter word
// trains in well under a second.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/bpe_vocab.h"

namespace mms::data {

struct BpeTrainOptions {
  int64_t vocab_size = 4096;   // total, including the 512 byte symbols and 2 specials
  int64_t min_frequency = 2;   // a pair seen fewer times is never merged
};

BpeVocab train_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& options);

// One text per non-empty line of a UTF-8 file; errors name the file and line.
std::vector<std::string> read_corpus_lines(const std::string& path);

}  // namespace mms::data
