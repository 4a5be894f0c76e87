#include "shell_quote.h"

#include <algorithm>
#include <cctype>
#include <cstring>

namespace mmsft {

std::string shell_quoted(const std::string& a) {
  const bool plain = !a.empty() && std::all_of(a.begin(), a.end(), [](unsigned char c) {
    return c != '\0' && (std::isalnum(c) || std::strchr("@%+=:,./_-", c) != nullptr);
  });
  if (plain) return a;
  std::string out = "'";
  for (char c : a) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  return out + "'";
}

std::string resume_command(int argc, const char* const* argv) {
  std::string cmd;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--resume") == 0) continue;
    if (!cmd.empty()) cmd += ' ';
    cmd += shell_quoted(argv[i]);
  }
  return cmd + " --resume";
}

}  // namespace mmsft
