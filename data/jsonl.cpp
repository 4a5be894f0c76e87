#include "data/jsonl.h"

#include <cmath>
#include <fstream>
#include <set>

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

namespace {

// JSON leaves duplicate keys' meaning open and nlohmann keeps the last, so a row
// {"mean_rating": 9, "mean_rating": 3} would load as 3 with the 9 silently lost. This
// SAX pass builds nothing; it tracks the keys of each open object and the path to it.
class DuplicateKeyFinder : public nlohmann::json_sax<nlohmann::json> {
 public:
  // Empty when every object's keys are distinct, else the first repeat, described.
  const std::string& duplicate() const { return duplicate_; }

  bool null() override { return element(); }
  bool boolean(bool) override { return element(); }
  bool number_integer(number_integer_t) override { return element(); }
  bool number_unsigned(number_unsigned_t) override { return element(); }
  bool number_float(number_float_t, const string_t&) override { return element(); }
  bool string(string_t&) override { return element(); }
  bool binary(binary_t&) override { return element(); }
  bool start_object(std::size_t) override { return open(true); }
  bool start_array(std::size_t) override { return open(false); }
  bool end_object() override { return close(); }
  bool end_array() override { return close(); }
  bool key(string_t& key) override {
    Frame& f = frames_.back();
    f.key = key;
    if (!f.keys.insert(key).second && duplicate_.empty()) {
      duplicate_ = concat("duplicate key ", nlohmann::json(key).dump());  // quoted, escaped
      if (frames_.size() > 1) duplicate_ += concat(" in ", parent_path());
    }
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;  // only called on a line the DOM parse already accepted
  }

 private:
  struct Frame {
    bool object = false;
    std::set<std::string> keys;  // object: keys seen so far
    std::string key;             // object: the key whose value is being read
    int64_t index = -1;          // array: the element being read
  };

  // A value starts: in an array that is the next element (for the path).
  bool element() {
    if (!frames_.empty() && !frames_.back().object) ++frames_.back().index;
    return true;
  }
  bool open(bool object) {
    element();
    frames_.emplace_back();
    frames_.back().object = object;
    return true;
  }
  bool close() {
    frames_.pop_back();
    return true;
  }
  // "scenarios[2]": where the innermost object sits, from the row's top level.
  std::string parent_path() const {
    std::string path;
    for (size_t i = 0; i + 1 < frames_.size(); ++i) {
      if (frames_[i].object)
        path += (path.empty() ? "" : ".") + frames_[i].key;
      else
        path += concat("[", frames_[i].index, "]");
    }
    return path;
  }

  std::vector<Frame> frames_;
  std::string duplicate_;
};

// Empty when no object in `line` (valid JSON) repeats a key.
std::string find_duplicate_key(const std::string& line) {
  DuplicateKeyFinder finder;
  nlohmann::json::sax_parse(line, &finder);
  return finder.duplicate();
}

}  // namespace

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
    if (std::string duplicate = find_duplicate_key(line); !duplicate.empty()) {
      std::string msg = concat(path, ":", line_no, ": invalid JSON: ", duplicate,
                               " (only the last value would be kept)");
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
