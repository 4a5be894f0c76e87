// Where the data tests find their inputs: the committed fixtures, and the real CLIP
// vocabulary (../shared/clip, or $MMS_CLIP_VOCAB), which tests skip visibly when absent.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace mms::test {

inline std::string data_fixture(const std::string& name) {
  return std::string(MMS_SOURCE_DIR) + "/tests/fixtures/data/" + name;
}

// Empty when the real vocabulary is not available on this machine.
inline std::string clip_vocab_path() {
  if (const char* env = std::getenv("MMS_CLIP_VOCAB"); env && *env) return env;
  std::string shared = std::string(MMS_SHARED_DIR) + "/clip/bpe_simple_vocab_16e6.txt.gz";
  return std::filesystem::exists(shared) ? shared : std::string();
}

}  // namespace mms::test
