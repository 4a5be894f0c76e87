// JSON Lines reading with errors that say where: "FILE:LINE: field 'x': ...".
//
// read_jsonl() parses every non-blank line of a file; with skip_bad a malformed line is
// recorded in a BadRows tally instead of stopping the load, never silently dropped.
// FieldReader pulls typed fields out of one row and names the field on failure.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mms::data {

// What --skip-bad skipped, by reason, plus the first few messages verbatim.
struct BadRows {
  std::map<std::string, int64_t> count_by_reason;
  std::vector<std::string> examples;  // at most kMaxExamples full messages
  static constexpr size_t kMaxExamples = 20;

  void add(const std::string& reason, const std::string& message);
  int64_t total() const;
  std::string summary() const;  // "skipped 3 rows: 2 missing field, 1 bad rating"
};

struct JsonlRow {
  size_t line = 0;  // 1-based
  nlohmann::json value;
};

// Throws mms::Error("FILE:LINE: invalid JSON: ...") unless `bad` is given, in which
// case such lines are counted there under "invalid JSON" and skipped. A line holding a
// NUL byte is invalid JSON too (the parser would stop at it and drop the rest), and so
// is an object, at any depth, that repeats a key (only the last value would be kept):
// the message names the key and where it is, e.g. 'duplicate key "text" in scenarios[1]'.
std::vector<JsonlRow> read_jsonl(const std::string& path, BadRows* bad = nullptr);

// Typed access to one object's fields; every error names file:line and the field.
class FieldReader {
 public:
  FieldReader(const nlohmann::json& object, std::string where);
  bool has(const char* field) const;
  std::string string(const char* field) const;        // must be a string
  double number(const char* field) const;             // int or float, finite
  int64_t integer(const char* field) const;           // an integral number
  const nlohmann::json& array(const char* field) const;
  const std::string& where() const { return where_; }
  [[noreturn]] void fail_field(const char* field, const std::string& what) const;

 private:
  const nlohmann::json& get(const char* field) const;
  const nlohmann::json& object_;
  std::string where_;
};

}  // namespace mms::data
