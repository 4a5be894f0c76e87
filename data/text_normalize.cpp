#include "data/text_normalize.h"

#include <utf8proc.h>

#include <cstdlib>

#include "tensor/error.h"

namespace mms::data {

namespace {

bool is_letter(int32_t cp) {
  switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
      return true;
    default:
      return false;
  }
}

bool is_number(int32_t cp) {
  switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

// Lowercase one code point the way Rust's char::to_lowercase does (what HF's Lowercase
// normaliser calls): the simple mapping, plus the one unconditional multi-character
// mapping in SpecialCasing.txt.
void append_lowercase(std::string& out, int32_t cp) {
  if (cp == 0x130) {  // LATIN CAPITAL LETTER I WITH DOT ABOVE -> i + COMBINING DOT ABOVE
    utf8_append(out, 'i');
    utf8_append(out, 0x307);
    return;
  }
  utf8_append(out, utf8proc_tolower(cp));
}

}  // namespace

bool is_unicode_whitespace(int32_t cp) {
  // White_Space=yes in PropList.txt; Rust's regex \s is exactly this set.
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

namespace {

// Calls visit(byte offset, code point) for each code point of `text` until visit returns
// false; an invalid sequence is visited once with code point -1 and ends the walk.
template <typename Visit>
void each_codepoint(std::string_view text, Visit visit) {
  const auto* bytes = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  const auto size = static_cast<utf8proc_ssize_t>(text.size());
  for (utf8proc_ssize_t pos = 0; pos < size;) {
    utf8proc_int32_t cp = 0;
    const utf8proc_ssize_t n = utf8proc_iterate(bytes + pos, size - pos, &cp);
    const bool valid = n > 0 && cp >= 0;
    if (!visit(static_cast<size_t>(pos), valid ? cp : -1) || !valid) return;
    pos += n;
  }
}

}  // namespace

void utf8_validate(std::string_view text) {
  each_codepoint(text, [](size_t pos, int32_t cp) {
    if (cp < 0) fail("text: invalid UTF-8 at byte ", pos);
    return true;
  });
}

bool is_utf8(std::string_view text) {
  bool valid = true;
  each_codepoint(text, [&](size_t, int32_t cp) { return valid = cp >= 0; });
  return valid;
}

bool is_blank_text(std::string_view text) {
  bool blank = true;
  each_codepoint(text, [&](size_t, int32_t cp) {
    switch (cp < 0 ? UTF8PROC_CATEGORY_CN : utf8proc_category(cp)) {
      case UTF8PROC_CATEGORY_ZS: case UTF8PROC_CATEGORY_ZL: case UTF8PROC_CATEGORY_ZP:
      case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF:
        return true;
      default:
        blank = false;  // a visible character, or an invalid byte (reported elsewhere)
        return false;
    }
  });
  return blank;
}

size_t find_control_char(std::string_view text, int32_t* codepoint) {
  size_t found = std::string_view::npos;
  each_codepoint(text, [&](size_t pos, int32_t cp) {
    if (cp >= 0 && utf8proc_category(cp) != UTF8PROC_CATEGORY_CC) return true;
    if (codepoint) *codepoint = cp >= 0 ? cp : static_cast<unsigned char>(text[pos]);
    found = pos;
    return false;
  });
  return found;
}

std::vector<int32_t> utf8_decode(std::string_view text) {
  std::vector<int32_t> out;
  out.reserve(text.size());
  const auto* bytes = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  utf8proc_ssize_t pos = 0;
  const auto size = static_cast<utf8proc_ssize_t>(text.size());
  while (pos < size) {
    utf8proc_int32_t cp = 0;
    utf8proc_ssize_t n = utf8proc_iterate(bytes + pos, size - pos, &cp);
    if (n <= 0 || cp < 0) fail("text: invalid UTF-8 at byte ", pos);
    out.push_back(cp);
    pos += n;
  }
  return out;
}

void utf8_append(std::string& out, int32_t cp) {
  utf8proc_uint8_t buf[4];
  utf8proc_ssize_t n = utf8proc_encode_char(cp, buf);
  out.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

std::string clip_normalize(std::string_view text) {
  if (text.empty()) return {};
  utf8_decode(text);  // validates first, so the error names the byte offset
  utf8proc_uint8_t* composed = nullptr;
  utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                    static_cast<utf8proc_ssize_t>(text.size()), &composed,
                                    static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) fail("text: NFC normalisation failed: ", utf8proc_errmsg(n));
  std::string nfc(reinterpret_cast<const char*>(composed), static_cast<size_t>(n));
  std::free(composed);

  std::string out;
  out.reserve(nfc.size());
  bool in_space = false;
  for (int32_t cp : utf8_decode(nfc)) {
    if (is_unicode_whitespace(cp)) {
      if (!in_space) out.push_back(' ');
      in_space = true;
      continue;
    }
    in_space = false;
    append_lowercase(out, cp);
  }
  return out;
}

std::vector<std::string> clip_pretokenize(std::string_view normalized) {
  static constexpr std::string_view kSpecials[] = {"<|startoftext|>", "<|endoftext|>"};
  std::vector<int32_t> cps = utf8_decode(normalized);
  std::vector<std::string> pieces;
  const size_t n = cps.size();
  size_t i = 0;
  auto piece = [&](size_t begin, size_t end) {
    std::string s;
    for (size_t k = begin; k < end; ++k) utf8_append(s, cps[k]);
    pieces.push_back(std::move(s));
  };
  auto matches_ascii = [&](size_t at, std::string_view word) {
    if (at + word.size() > n) return false;
    for (size_t k = 0; k < word.size(); ++k)
      if (cps[at + k] != static_cast<unsigned char>(word[k])) return false;
    return true;
  };
  while (i < n) {
    const int32_t cp = cps[i];
    // Alternatives in the regex's order: the first that matches at i wins.
    bool matched = false;
    for (std::string_view special : kSpecials) {
      if (matches_ascii(i, special)) {
        piece(i, i + special.size());
        i += special.size();
        matched = true;
        break;
      }
    }
    if (matched) continue;
    if (cp == '\'') {
      size_t len = 0;
      for (std::string_view c : {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"}) {
        if (matches_ascii(i, c)) { len = c.size(); break; }
      }
      if (len > 0) {
        piece(i, i + len);
        i += len;
        continue;
      }
    }
    if (is_letter(cp)) {
      size_t j = i + 1;
      while (j < n && is_letter(cps[j])) ++j;
      piece(i, j);
      i = j;
    } else if (is_number(cp)) {
      piece(i, i + 1);
      i += 1;
    } else if (is_unicode_whitespace(cp)) {
      i += 1;  // not matched by any alternative: dropped
    } else {
      size_t j = i + 1;
      while (j < n && !is_unicode_whitespace(cps[j]) && !is_letter(cps[j]) && !is_number(cps[j])) ++j;
      piece(i, j);
      i = j;
    }
  }
  return pieces;
}

}  // namespace mms::data
