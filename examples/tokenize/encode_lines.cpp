#include "encode_lines.h"

#include <istream>
#include <nlohmann/json.hpp>
#include <ostream>

#include "tensor/error.h"

namespace mmtokenize {

void encode_text(const mms::data::ClipTokenizer& tokenizer, int64_t context, const std::string& text,
                 const std::string& where, std::ostream& out) {
  mms::data::TokenizedText t;
  try {
    t = tokenizer.encode(text, context);
  } catch (const mms::Error& e) {
    // The tokenizer's message ("text: invalid UTF-8 at byte 3") cannot say which text.
    throw mms::Error(where + ": " + e.what());
  }
  const nlohmann::json line = {{"input_ids", t.input_ids}, {"attention_mask", t.attention_mask}};
  out << line.dump() << "\n";
}

void encode_lines(const mms::data::ClipTokenizer& tokenizer, int64_t context, std::istream& in,
                  const std::string& source, std::ostream& out) {
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n)
    encode_text(tokenizer, context, line, mms::concat(source, " line ", n), out);
}

}  // namespace mmtokenize
