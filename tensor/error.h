// The one exception type of the engine, and the checks that throw it.
//
// Every message names the operation and what was wrong ("matmul: shapes [2,3] and
// [4,5] do not agree on the inner dimension"), so the user never has to guess.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace mms {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {
inline void append_all(std::ostringstream&) {}
template <typename T, typename... Rest>
void append_all(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  append_all(os, rest...);
}
}  // namespace detail

// Builds a message from any streamable pieces: concat("got ", n, " dims").
template <typename... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream os;
  detail::append_all(os, parts...);
  return os.str();
}

template <typename... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  throw Error(concat(parts...));
}

}  // namespace mms

// MMS_CHECK(cond, "op: message ", value, ...) throws mms::Error when cond is false.
#define MMS_CHECK(cond, ...)                 \
  do {                                       \
    if (!(cond)) ::mms::fail(__VA_ARGS__);   \
  } while (0)
