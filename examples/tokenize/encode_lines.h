// tokenize's encoding loop, apart from main so tests/test_data_tokenizer.cpp can drive it
// (compiled in, see tests/CMakeLists.txt).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>

#include "data/tokenizer.h"

namespace mmtokenize {

// One JSON line {"input_ids": [...], "attention_mask": [...]} for `text` on `out`. An
// error is rethrown prefixed with `where` ("stdin line 3"), so the user learns which
// text was bad, not just the byte.
void encode_text(const mms::data::ClipTokenizer& tokenizer, int64_t context, const std::string& text,
                 const std::string& where, std::ostream& out);

// Every line of `in` (1-based lines, named "<source> line N" in errors).
void encode_lines(const mms::data::ClipTokenizer& tokenizer, int64_t context, std::istream& in,
                  const std::string& source, std::ostream& out);

}  // namespace mmtokenize
