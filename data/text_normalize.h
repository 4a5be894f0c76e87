// CLIP text normalisation and pre-tokenisation, exactly as HF's CLIPTokenizer
// (tokenizers backend) does it, implemented by hand on utf8proc categories so there is
// no std::regex (slow, and without Unicode classes) in the hot path.
//
//   normalise:     NFC, every run of Unicode White_Space -> " ", lowercase (per code
//                  point, full mapping: U+0130 becomes "i" + U+0307 as Rust does).
//   pre-tokenise:  the pieces matched by
//                  <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//                  in order, whitespace between them dropped.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mms::data {

// Throws mms::Error naming the byte offset when `text` is not valid UTF-8.
std::string clip_normalize(std::string_view text);

// Splits normalised text into the regex's pieces (UTF-8 substrings).
std::vector<std::string> clip_pretokenize(std::string_view normalized);

// UTF-8 helpers shared by the tokenizer and the trainer.
std::vector<int32_t> utf8_decode(std::string_view text);  // throws on invalid UTF-8
void utf8_append(std::string& out, int32_t codepoint);
bool is_unicode_whitespace(int32_t codepoint);  // the White_Space property (Rust's \s)
void utf8_validate(std::string_view text);      // throws "text: invalid UTF-8 at byte N"
bool is_utf8(std::string_view text);            // the same test, as a yes/no

// True when `text` shows nothing: every code point is a separator (Zs, Zl, Zp: space,
// U+00A0, U+3000, ...), a control (Cc) or an invisible format character (Cf: U+200B,
// U+FEFF, ...). Invalid UTF-8 is not blank (it is rejected elsewhere).
bool is_blank_text(std::string_view text);

// Byte offset of the first control character (category Cc: C0 incl. NUL, DEL, C1) in
// `text`, or npos; *codepoint receives it. Invalid UTF-8 bytes count as control too, so
// an id that is not text is never used as a file name.
size_t find_control_char(std::string_view text, int32_t* codepoint = nullptr);

}  // namespace mms::data
