#include "data/bpe_vocab.h"

#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "data/text_normalize.h"
#include "tensor/error.h"

namespace mms::data {

namespace fs = std::filesystem;

namespace {

// OpenAI keeps merges[1 : 49152 - 256 - 2 + 1]: exactly this many after the header.
constexpr size_t kOpenAiMergeCount = 49152 - 256 - 2;

std::vector<int> printable_bytes() {
  std::vector<int> bs;
  for (int b = '!'; b <= '~'; ++b) bs.push_back(b);
  for (int b = 0xA1; b <= 0xAC; ++b) bs.push_back(b);
  for (int b = 0xAE; b <= 0xFF; ++b) bs.push_back(b);
  return bs;
}

std::string read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(what, ": cannot open ", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string gunzip_file(const std::string& path) {
  gzFile gz = gzopen(path.c_str(), "rb");
  if (!gz) fail("bpe vocab: cannot open ", path);
  std::string out;
  char buf[1 << 16];
  for (;;) {
    int n = gzread(gz, buf, sizeof buf);
    if (n < 0) {
      int errnum = 0;
      std::string msg = gzerror(gz, &errnum);
      gzclose(gz);
      fail("bpe vocab: ", path, ": corrupt gzip data (", msg, ")");
    }
    if (n == 0) {
      // A cut-off stream reads as a short file: zlib reports it only through gzerror.
      int errnum = Z_OK;
      const char* msg = gzerror(gz, &errnum);
      if (errnum != Z_OK && errnum != Z_STREAM_END) {
        std::string reason = msg ? msg : "unknown";
        gzclose(gz);
        fail("bpe vocab: ", path, ": corrupt or truncated gzip data (", reason, ")");
      }
      break;
    }
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > (size_t(1) << 30)) {
      gzclose(gz);
      fail("bpe vocab: ", path, ": decompresses to more than 1 GiB");
    }
  }
  gzclose(gz);
  return out;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  return lines;
}

std::pair<std::string, std::string> parse_merge(const std::string& line, const std::string& file,
                                                size_t line_no) {
  size_t space = line.find(' ');
  if (space == std::string::npos || space == 0 || space + 1 >= line.size() ||
      line.find(' ', space + 1) != std::string::npos)
    fail("bpe vocab: ", file, ":", line_no, ": merge must be two symbols separated by one space, got '",
         line.substr(0, 80), "'");
  std::string a = line.substr(0, space), b = line.substr(space + 1);
  try {
    utf8_decode(a);
    utf8_decode(b);
  } catch (const Error&) {
    fail("bpe vocab: ", file, ":", line_no, ": merge is not valid UTF-8");
  }
  return {a, b};
}

// A merge may rebuild a string another merge already made (("ab","c") and ("a","bc"));
// that token keeps its first id so vocab.json stays a one-to-one map.
void add_token(BpeVocab& v, const std::string& token) {
  if (v.token_to_id.emplace(token, static_cast<int32_t>(v.id_to_token.size())).second)
    v.id_to_token.push_back(token);
}

}  // namespace

const std::vector<std::string>& bytes_to_unicode() {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    std::vector<bool> printable(256, false);
    for (int b : printable_bytes()) printable[b] = true;
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      int cp = printable[b] ? b : 256 + n++;
      utf8_append(t[b], cp);
    }
    return t;
  }();
  return table;
}

const std::vector<std::string>& byte_symbols_in_vocab_order() {
  static const std::vector<std::string> order = [] {
    std::vector<std::string> o;
    std::vector<bool> seen(256, false);
    for (int b : printable_bytes()) {
      o.push_back(bytes_to_unicode()[b]);
      seen[b] = true;
    }
    for (int b = 0; b < 256; ++b)
      if (!seen[b]) o.push_back(bytes_to_unicode()[b]);
    return o;
  }();
  return order;
}

int32_t BpeVocab::id(const std::string& token) const {
  auto it = token_to_id.find(token);
  return it == token_to_id.end() ? -1 : it->second;
}

BpeVocab vocab_from_merges(std::vector<std::pair<std::string, std::string>> merges) {
  BpeVocab v;
  for (const auto& s : byte_symbols_in_vocab_order()) add_token(v, s);
  for (const auto& s : byte_symbols_in_vocab_order()) add_token(v, s + kEndOfWord);
  for (const auto& [a, b] : merges) add_token(v, a + b);
  add_token(v, kStartOfText);
  add_token(v, kEndOfText);
  v.merges = std::move(merges);
  return v;
}

BpeVocab load_openai_bpe_gz(const std::string& gz_path) {
  std::vector<std::string> lines = split_lines(gunzip_file(gz_path));
  if (lines.empty()) fail("bpe vocab: ", gz_path, ": empty file");
  std::vector<std::pair<std::string, std::string>> merges;
  for (size_t i = 1; i < lines.size() && merges.size() < kOpenAiMergeCount; ++i) {
    if (lines[i].empty()) continue;
    merges.push_back(parse_merge(lines[i], gz_path, i + 1));
  }
  // The layout is CLIP's only with all of its merges: fewer would shrink the vocabulary
  // and move <|startoftext|>/<|endoftext|> off 49406/49407, silently breaking every
  // pretrained model. Any other merge list belongs in a vocab.json + merges.txt folder.
  if (merges.size() != kOpenAiMergeCount)
    fail("bpe vocab: ", gz_path, ": found ", merges.size(), " merges after the header, but OpenAI's CLIP merge list ",
         "needs ", kOpenAiMergeCount, " (49152 - 256 - 2); not bpe_simple_vocab_16e6.txt.gz? (a smaller ",
         "vocabulary must be a directory with vocab.json + merges.txt)");
  BpeVocab v = vocab_from_merges(std::move(merges));
  for (size_t r = 0; r < v.merges.size(); ++r) {
    const auto& [a, b] = v.merges[r];
    if (v.id(a) < 0 || v.id(b) < 0)
      fail("bpe vocab: ", gz_path, ":", r + 2, ": merge '", a, " ", b, "' uses a symbol not built by earlier merges");
  }
  return v;
}

BpeVocab load_hf_bpe(const std::string& vocab_json, const std::string& merges_txt) {
  BpeVocab v;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(vocab_json, "bpe vocab"));
  } catch (const nlohmann::json::exception& e) {
    fail("bpe vocab: ", vocab_json, ": invalid JSON: ", e.what());
  }
  if (!j.is_object() || j.empty()) fail("bpe vocab: ", vocab_json, ": expected a non-empty object {token: id}");
  v.id_to_token.assign(j.size(), std::string());
  std::vector<bool> used(j.size(), false);
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!it.value().is_number_integer())
      fail("bpe vocab: ", vocab_json, ": token '", it.key(), "': id must be an integer");
    int64_t id = it.value().get<int64_t>();
    if (id < 0 || id >= static_cast<int64_t>(j.size()))
      fail("bpe vocab: ", vocab_json, ": token '", it.key(), "': id ", id, " outside [0, ", j.size(), ")");
    if (used[id]) fail("bpe vocab: ", vocab_json, ": id ", id, " is used twice");
    used[id] = true;
    v.id_to_token[id] = it.key();
    v.token_to_id.emplace(it.key(), static_cast<int32_t>(id));
  }
  std::vector<std::string> lines = split_lines(read_file(merges_txt, "bpe vocab"));
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].empty() || (i == 0 && lines[i].rfind("#version", 0) == 0)) continue;
    auto merge = parse_merge(lines[i], merges_txt, i + 1);
    if (v.id(merge.first) < 0 || v.id(merge.second) < 0 || v.id(merge.first + merge.second) < 0)
      fail("bpe vocab: ", merges_txt, ":", i + 1, ": merge '", lines[i], "' refers to a token missing from ",
           vocab_json);
    v.merges.push_back(std::move(merge));
  }
  for (const char* special : {kStartOfText, kEndOfText})
    if (v.id(special) < 0) fail("bpe vocab: ", vocab_json, ": missing special token ", special);
  return v;
}

BpeVocab load_bpe_vocab(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec))
    return load_hf_bpe((fs::path(path) / "vocab.json").string(), (fs::path(path) / "merges.txt").string());
  if (path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0) return load_openai_bpe_gz(path);
  if (fs::path(path).filename() == "vocab.json")
    return load_hf_bpe(path, (fs::path(path).parent_path() / "merges.txt").string());
  if (!fs::exists(path, ec)) fail("bpe vocab: ", path, " does not exist");
  fail("bpe vocab: ", path, ": expected a .gz merge list, a vocab.json, or a directory with vocab.json + merges.txt");
}

void save_hf_bpe(const BpeVocab& vocab, const std::string& dir) {
  fs::create_directories(dir);
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (size_t i = 0; i < vocab.id_to_token.size(); ++i) j[vocab.id_to_token[i]] = i;
  auto write_atomic = [](const fs::path& path, const std::string& text) {
    fs::path tmp = path;
    tmp += ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary);
      if (!out) fail("bpe vocab: cannot write ", tmp.string());
      out << text;
      if (!out.flush()) fail("bpe vocab: write failed for ", tmp.string());
    }
    fs::rename(tmp, path);
  };
  write_atomic(fs::path(dir) / "vocab.json", j.dump() + "\n");
  std::string merges = "#version: 0.2\n";
  for (const auto& [a, b] : vocab.merges) merges += a + " " + b + "\n";
  write_atomic(fs::path(dir) / "merges.txt", merges);
}

}  // namespace mms::data
