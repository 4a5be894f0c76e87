#include "data/mmscale_dataset.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <unordered_map>
#include <unordered_set>

#include "data/image.h"
#include "data/text_normalize.h"
#include "tensor/error.h"

namespace mms::data {

namespace fs = std::filesystem;

const char* modality_name(Modality m) {
  switch (m) {
    case Modality::Text: return "text";
    case Modality::Image: return "image";
    case Modality::Both: return "both";
  }
  return "?";
}

bool parse_modality(const std::string& s, Modality* out) {
  if (s == "text") *out = Modality::Text;
  else if (s == "image") *out = Modality::Image;
  else if (s == "both") *out = Modality::Both;
  else return false;
  return true;
}

int64_t Dataset::num_scenarios() const {
  int64_t n = 0;
  for (const auto& im : images) n += static_cast<int64_t>(im.scenarios.size());
  return n;
}

std::string LoadReport::summary() const {
  return concat("read ", rows_read, " rows; kept ", images_kept, " images / ", scenarios_kept,
                " scenarios; dropped ", images_dropped_few_scenarios, " images with too few scenarios; ",
                skipped.summary());
}

std::string resolve_data_root(const std::string& flag_value) {
  if (!flag_value.empty()) return flag_value;
  if (const char* env = std::getenv("MMSCALE_DATA_ROOT"); env && *env) return env;
  fail("data: no dataset root: pass --data ROOT or set MMSCALE_DATA_ROOT");
}

namespace {

// An id shown in a message: JSON-quoted, so a NUL or newline inside it is visible.
std::string quoted(const std::string& id) {
  return nlohmann::json(id).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Ids become file names and output keys: a NUL would cut "00002.png\0evil" down to
// another image's file, and other control characters are never part of a real id.
void check_id(const FieldReader& row, const char* field, const std::string& id) {
  int32_t cp = 0;
  const size_t at = find_control_char(id, &cp);
  if (at == std::string::npos) return;
  char code[16];
  std::snprintf(code, sizeof code, "U+%04X", static_cast<unsigned>(cp));
  row.fail_field(field, concat("control character ", code, " at byte ", at, " in ", quoted(id)));
}

// A validation failure: which reason bucket it counts under with --skip-bad.
struct RowError {
  std::string reason;
  std::string message;
};

Scenario parse_scenario(const FieldReader& row) {
  Scenario s;
  s.scenario_id = row.string("scenario_id");
  if (s.scenario_id.empty()) row.fail_field("scenario_id", "empty");
  check_id(row, "scenario_id", s.scenario_id);
  s.text = row.string("text");
  // Blank means nothing a rater could have read: U+00A0 or U+3000 alone is blank too.
  if (is_blank_text(s.text)) row.fail_field("text", "empty text");
  s.mean_rating = row.number("mean_rating");
  if (s.mean_rating < 1.0 || s.mean_rating > 5.0)
    row.fail_field("mean_rating", concat("rating ", s.mean_rating, " outside [1, 5]"));
  if (row.has("ratings")) {
    const auto& ratings = row.array("ratings");
    for (size_t i = 0; i < ratings.size(); ++i) {
      const auto& r = ratings[i];
      if (!r.is_number() || r.get<double>() != std::floor(r.get<double>()))
        row.fail_field("ratings", concat("element ", i, " is not an integer: ", r.dump()));
      const double v = r.get<double>();
      if (v < 1 || v > 5) row.fail_field("ratings", concat("element ", i, " = ", v, " outside [1, 5]"));
      s.ratings.push_back(static_cast<int32_t>(v));
    }
  }
  s.rating_std = row.has("rating_std") ? row.number("rating_std") : 0.0;
  if (s.rating_std < 0) row.fail_field("rating_std", concat("negative (", s.rating_std, ")"));
  const std::string modality = row.string("modality");
  if (!parse_modality(modality, &s.modality))
    row.fail_field("modality", concat("unknown modality '", modality, "' (expected text, image or both)"));
  return s;
}

std::string reason_of(const std::string& message) {
  // Bucket names for the --skip-bad summary, from the fixed phrases our messages use
  // (checked most specific first: a file name may itself contain a word like "missing").
  static const std::pair<const char*, const char*> kReasons[] = {
      {"no such image file", "no such image"},
      {"duplicate scenario_id", "duplicate scenario_id"},
      {"control character", "control character in id"},
      {"differs from the row's image_id", "image_id mismatch"},
      {"unknown modality", "unknown modality"},
      {"empty text", "empty text"},
      {"outside [1, 5]", "rating outside [1, 5]"},
      {"': missing", "missing field"},
      {"image: ", "unreadable image"},
  };
  for (const auto& [phrase, reason] : kReasons)
    if (message.find(phrase) != std::string::npos) return reason;
  return "invalid value";
}

// A context row's scenario may repeat its image_id; one naming another image means the
// row was assembled wrongly, and the rating would be trained against the wrong picture.
// Returns the error message, or "" when the scenario agrees (or names no image).
std::string own_image_id(const FieldReader& scenario, const std::string& row_image_id) {
  if (!scenario.has("image_id")) return {};
  try {
    const std::string own = scenario.string("image_id");
    if (own != row_image_id)
      scenario.fail_field("image_id", concat(quoted(own), " differs from the row's image_id ", quoted(row_image_id)));
  } catch (const Error& e) {
    return e.what();
  }
  return {};
}

class Builder {
 public:
  Builder(std::string images_dir, const LoadOptions& options, Dataset& out)
      : images_dir_(std::move(images_dir)), options_(options), out_(out) {}

  void handle(const std::string& message) {
    if (!options_.skip_bad) throw Error(message);
    out_.report.skipped.add(reason_of(message), message);
  }

  // Adds one scenario to image `image_id`; errors carry `where` (file:line).
  void add(const std::string& image_id, const FieldReader& row) {
    Scenario s;
    try {
      s = parse_scenario(row);
    } catch (const Error& e) {
      handle(e.what());
      return;
    }
    if (!seen_ids_.insert(s.scenario_id).second) {
      handle(concat(row.where(), ": field 'scenario_id': duplicate scenario_id '", s.scenario_id, "'"));
      return;
    }
    image(image_id, row.where()).scenarios.push_back(std::move(s));
  }

  ImageRecord& image(const std::string& image_id, const std::string& where) {
    auto it = index_.find(image_id);
    if (it != index_.end()) return out_.images[it->second];
    index_.emplace(image_id, out_.images.size());
    first_seen_.push_back(where);
    ImageRecord rec;
    rec.image_id = image_id;
    rec.path = (fs::path(images_dir_) / image_id).string();
    out_.images.push_back(std::move(rec));
    return out_.images.back();
  }

  void finish() {
    std::vector<ImageRecord> kept;
    for (size_t i = 0; i < out_.images.size(); ++i) {
      ImageRecord& rec = out_.images[i];
      if (static_cast<int64_t>(rec.scenarios.size()) < options_.min_scenarios) {
        ++out_.report.images_dropped_few_scenarios;
        continue;
      }
      if (!image_ok(rec, first_seen_[i])) continue;
      out_.report.scenarios_kept += static_cast<int64_t>(rec.scenarios.size());
      kept.push_back(std::move(rec));
    }
    out_.images = std::move(kept);
    out_.report.images_kept = static_cast<int64_t>(out_.images.size());
  }

 private:
  bool image_ok(const ImageRecord& rec, const std::string& where) {
    if (!options_.check_image_files && !options_.decode_images) return true;
    std::error_code ec;
    if (!fs::is_regular_file(rec.path, ec)) {
      handle(concat(where, ": field 'image_id': no such image file ", rec.path));
      return false;
    }
    if (options_.decode_images) {
      try {
        decode_image_file(rec.path);
      } catch (const Error& e) {
        handle(concat(where, ": field 'image_id': ", e.what()));
        return false;
      }
    }
    return true;
  }

  std::string images_dir_;
  const LoadOptions& options_;
  Dataset& out_;
  std::unordered_map<std::string, size_t> index_;
  std::vector<std::string> first_seen_;
  std::unordered_set<std::string> seen_ids_;
};

}  // namespace

Dataset load_mmscale_file(const std::string& jsonl_path, const std::string& images_dir, const LoadOptions& options) {
  Dataset out;
  std::vector<JsonlRow> rows = read_jsonl(jsonl_path, options.skip_bad ? &out.report.skipped : nullptr);
  out.report.rows_read = static_cast<int64_t>(rows.size());
  Builder builder(images_dir, options, out);
  for (const JsonlRow& row : rows) {
    const std::string where = concat(jsonl_path, ":", row.line);
    FieldReader fields(row.value, where);
    std::string image_id;
    try {
      image_id = fields.string("image_id");
      check_id(fields, "image_id", image_id);
      if (image_id.empty() || image_id.find('/') != std::string::npos || image_id.find('\\') != std::string::npos ||
          image_id == "." || image_id == "..")
        fields.fail_field("image_id", concat("'", image_id, "' is not a file name inside images/"));
    } catch (const Error& e) {
      builder.handle(e.what());
      continue;
    }
    if (!row.value.contains("scenarios")) {  // a flat row: one scenario
      builder.add(image_id, fields);
      continue;
    }
    const auto& scenarios = row.value.at("scenarios");
    if (!scenarios.is_array()) {
      builder.handle(concat(where, ": field 'scenarios': expected an array, got ", scenarios.type_name()));
      continue;
    }
    builder.image(image_id, where);  // so an image whose scenarios all fail is counted as dropped
    for (size_t k = 0; k < scenarios.size(); ++k) {
      FieldReader scenario(scenarios[k], concat(where, ": scenarios[", k, "]"));
      if (!scenarios[k].is_object()) {
        builder.handle(concat(scenario.where(), ": expected an object"));
        continue;
      }
      if (std::string own = own_image_id(scenario, image_id); !own.empty()) {
        builder.handle(own);
        continue;
      }
      builder.add(image_id, scenario);
    }
  }
  builder.finish();
  return out;
}

Dataset load_mmscale_split(const std::string& root, const std::string& split, const LoadOptions& options) {
  if (split != "train" && split != "val" && split != "test")
    fail("data: unknown split '", split, "' (expected train, val or test)");
  return load_mmscale_file((fs::path(root) / "splits" / (split + ".jsonl")).string(),
                           (fs::path(root) / "images").string(), options);
}

Dataset load_mmscale_all(const std::string& root, const LoadOptions& options) {
  fs::path contexts = fs::path(root) / "mmscale_clean_contexts.jsonl";
  fs::path flat = fs::path(root) / "mmscale_clean_flat.jsonl";
  std::error_code ec;
  const fs::path& file = fs::exists(contexts, ec) ? contexts : flat;
  return load_mmscale_file(file.string(), (fs::path(root) / "images").string(), options);
}

}  // namespace mms::data
