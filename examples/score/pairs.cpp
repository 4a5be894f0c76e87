#include "pairs.h"

#include <filesystem>
#include <unordered_map>

#include "data/jsonl.h"
#include "data/mmscale_dataset.h"
#include "data/text_normalize.h"
#include "tensor/error.h"

namespace mmscore {

namespace fs = std::filesystem;

namespace {

// A string or an integer id (the release uses both), as a string; `fallback` if absent.
std::string id_field(const mms::data::FieldReader& row, const nlohmann::json& value, const char* field,
                     const std::string& fallback) {
  if (!value.contains(field) || value[field].is_null()) return fallback;
  const nlohmann::json& v = value[field];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  row.fail_field(field, mms::concat("expected a string or an integer, got ", v.dump()));
}

}  // namespace

std::vector<PairRow> read_pairs_file(const std::string& path) {
  const fs::path folder = fs::path(path).parent_path();
  std::vector<PairRow> rows;
  std::unordered_map<std::string, size_t> first_line;  // scenario_id -> line
  for (const mms::data::JsonlRow& line : mms::data::read_jsonl(path)) {
    const std::string where = path + ":" + std::to_string(line.line);
    MMS_CHECK(line.value.is_object(), where, ": expected a JSON object, got ", line.value.type_name());
    const mms::data::FieldReader row(line.value, where);
    PairRow p;
    const std::string image = row.string("image");
    if (image.empty()) row.fail_field("image", "empty path");
    // The OS reads a path only up to a NUL: "a.png\0x" would silently open a.png.
    if (size_t at = mms::data::find_control_char(image); at != std::string::npos)
      row.fail_field("image", mms::concat("control character at byte ", at, " in the path"));
    p.image_path = fs::path(image).is_absolute() ? image : (folder / image).string();
    if (!fs::is_regular_file(p.image_path)) row.fail_field("image", "no such image file " + p.image_path);
    p.text = row.string("text");
    // Spaces alone (U+00A0, U+3000 included) give the model nothing to rate.
    if (mms::data::is_blank_text(p.text)) row.fail_field("text", "empty text");
    p.scenario_id = id_field(row, line.value, "scenario_id", std::to_string(line.line));
    // scenario_id is the key of each predictions line: a repeat (often a pair listed
    // twice) gives two lines no one can tell apart, and weighs that pair twice.
    if (auto [first, fresh] = first_line.emplace(p.scenario_id, line.line); !fresh)
      row.fail_field("scenario_id", mms::concat("duplicate scenario_id '", p.scenario_id, "' (first on line ",
                                                first->second, ")"));
    p.image_id = id_field(row, line.value, "image_id", fs::path(image).filename().string());
    if (line.value.contains("gold_rating") && !line.value["gold_rating"].is_null()) {
      const double g = row.number("gold_rating");
      if (g < 1.0 || g > 5.0) row.fail_field("gold_rating", mms::concat("outside [1, 5]: ", g));
      p.gold_rating = g;
    }
    if (line.value.contains("modality") && !line.value["modality"].is_null()) {
      p.modality = row.string("modality");
      mms::data::Modality unused;
      if (!mms::data::parse_modality(p.modality, &unused))
        row.fail_field("modality", "unknown modality '" + p.modality + "' (expected text, image or both)");
    }
    rows.push_back(std::move(p));
  }
  MMS_CHECK(!rows.empty(), path, ": no pairs (the file is empty)");
  return rows;
}

}  // namespace mmscore
