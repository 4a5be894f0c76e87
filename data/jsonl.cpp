#include "data/jsonl.h"

#include <cmath>
#include <fstream>

#include "tensor/error.h"

namespace mms::data {

void BadRows::add(const std::string& reason, const std::string& message) {
  ++count_by_reason[reason];
  if (examples.size() < kMaxExamples) examples.push_back(message);
}

int64_t BadRows::total() const {
  int64_t n = 0;
  for (const auto& [reason, count] : count_by_reason) n += count;
  return n;
}

std::string BadRows::summary() const {
  if (count_by_reason.empty()) return "skipped 0 rows";
  std::string s = concat("skipped ", total(), " rows:");
  bool first = true;
  for (const auto& [reason, count] : count_by_reason) {
    s += concat(first ? " " : ", ", count, " ", reason);
    first = false;
  }
  return s;
}

std::vector<JsonlRow> read_jsonl(const std::string& path, BadRows* bad) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open (", std::ifstream(path) ? "unreadable" : "no such file", ")");
  std::vector<JsonlRow> rows;
  std::string line;
  size_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    JsonlRow row;
    row.line = line_no;
    // nlohmann stops at a NUL byte and ignores what follows it, so a line holding
    // "{...}\0{...}" would silently lose its second row: refuse it outright.
    if (size_t nul = line.find('\0'); nul != std::string::npos) {
      std::string msg = concat(path, ":", line_no, ": invalid JSON: NUL byte at column ", nul + 1,
                               " (a JSON line cannot contain one)");
      if (!bad) throw Error(msg);
      bad->add("invalid JSON", msg);
      continue;
    }
    try {
      row.value = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      std::string msg = concat(path, ":", line_no, ": invalid JSON: ", e.what());
      if (!bad) throw Error(msg);
      bad->add("invalid JSON", msg);
      continue;
    }
    if (!row.value.is_object()) {
      std::string msg = concat(path, ":", line_no, ": expected a JSON object, got ", row.value.type_name());
      if (!bad) throw Error(msg);
      bad->add("invalid JSON", msg);
      continue;
    }
    rows.push_back(std::move(row));
  }
  if (in.bad()) fail(path, ": read error after line ", line_no);
  return rows;
}

FieldReader::FieldReader(const nlohmann::json& object, std::string where)
    : object_(object), where_(std::move(where)) {}

void FieldReader::fail_field(const char* field, const std::string& what) const {
  fail(where_, ": field '", field, "': ", what);
}

bool FieldReader::has(const char* field) const {
  return object_.is_object() && object_.contains(field) && !object_.at(field).is_null();
}

const nlohmann::json& FieldReader::get(const char* field) const {
  if (!has(field)) fail_field(field, "missing");
  return object_.at(field);
}

std::string FieldReader::string(const char* field) const {
  const auto& v = get(field);
  if (!v.is_string()) fail_field(field, concat("expected a string, got ", v.type_name()));
  return v.get<std::string>();
}

double FieldReader::number(const char* field) const {
  const auto& v = get(field);
  if (!v.is_number()) fail_field(field, concat("expected a number, got ", v.type_name()));
  double d = v.get<double>();
  if (!std::isfinite(d)) fail_field(field, "not a finite number");
  return d;
}

int64_t FieldReader::integer(const char* field) const {
  const auto& v = get(field);
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) return static_cast<int64_t>(d);
  }
  fail_field(field, concat("expected an integer, got ", v.dump()));
}

const nlohmann::json& FieldReader::array(const char* field) const {
  const auto& v = get(field);
  if (!v.is_array()) fail_field(field, concat("expected an array, got ", v.type_name()));
  return v;
}

}  // namespace mms::data
