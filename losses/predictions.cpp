#include "losses/predictions.h"

#include <cmath>
#include <fstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "tensor/error.h"

namespace mms::losses {

namespace {
using nlohmann::json;

// A string or integer id as a string; `where` prefixes errors.
std::string id_field(const json& row, const char* key, const std::string& where, bool required) {
  auto it = row.find(key);
  if (it == row.end() || it->is_null()) {
    if (required) fail(where, ": missing required field \"", key, "\"");
    return "";
  }
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_integer()) return std::to_string(it->get<int64_t>());
  fail(where, ": ", key, " must be a string or an integer, got ", it->dump());
}

double number_field(const json& value, const char* key, const std::string& where) {
  if (!value.is_number()) fail(where, ": ", key, " must be a number, got ", value.dump());
  const double x = value.get<double>();
  if (!std::isfinite(x)) fail(where, ": ", key, " is not finite (", x, ")");
  return x;
}
}  // namespace

PredictionSet read_predictions(std::istream& in, const std::string& name) {
  PredictionSet set;
  std::string line;
  int64_t line_number = 0;
  std::unordered_map<std::string, int64_t> line_of_scenario;
  while (std::getline(in, line)) {
    ++line_number;
    const std::string where = concat(name, ":", line_number);
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json row;
    try {
      row = json::parse(line);
    } catch (const json::parse_error& e) {
      fail(where, ": not valid JSON (", e.what(), ")");
    }
    if (!row.is_object()) fail(where, ": expected a JSON object, got ", row.type_name());

    PredictionRecord record;
    record.image_id = id_field(row, "image_id", where, true);
    auto gold = row.find("gold_rating");
    if (gold == row.end()) fail(where, ": missing required field \"gold_rating\"");
    record.gold_rating = number_field(*gold, "gold_rating", where);
    auto prediction = row.find("prediction");
    if (prediction == row.end()) fail(where, ": missing required field \"prediction\"");
    // A scenario scored twice would count twice in every metric.
    record.scenario_id = id_field(row, "scenario_id", where, false);
    if (!record.scenario_id.empty()) {
      const auto [first, fresh] = line_of_scenario.emplace(record.scenario_id, line_number);
      if (!fresh) fail(where, ": scenario_id '", record.scenario_id, "' repeats line ", first->second);
    }
    if (prediction->is_null()) {
      ++set.n_null_predictions;
      continue;
    }
    record.prediction = number_field(*prediction, "prediction", where);
    auto modality = row.find("modality");
    if (modality != row.end() && !modality->is_null()) {
      if (!modality->is_string()) fail(where, ": modality must be a string, got ", modality->dump());
      try {
        record.modality = parse_modality(modality->get<std::string>());
      } catch (const Error& e) {
        fail(where, ": ", e.what());
      }
    }
    set.records.push_back(std::move(record));
  }
  return set;
}

PredictionSet read_predictions(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("cannot open predictions file '", path, "'");
  return read_predictions(in, path);
}

}  // namespace mms::losses
