// The command line printed after an interrupt, so that pasting it into a shell resumes
// the same run: every argument quoted as the shell needs it.
#pragma once

#include <string>

namespace mmsft {

// One argument as a POSIX shell reads it back: as it is when every character is plain
// (letters, digits, @%+=:,./_-), else in single quotes, each ' inside written as '\''
// (close the quote, an escaped quote, reopen).
std::string shell_quoted(const std::string& argument);

// argv with "--resume" dropped and appended once, each argument shell_quoted.
std::string resume_command(int argc, const char* const* argv);

}  // namespace mmsft
