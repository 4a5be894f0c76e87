// The MM-SCALE release layout, read into plain structs.
//
//   ROOT/images/<image_id>                 one image per image_id (e.g. "03485.png")
//   ROOT/mmscale_clean_flat.jsonl          one row per scenario (image_id, scenario_id,
//                                          text, mean_rating, ratings, rating_std, modality, ...)
//   ROOT/mmscale_clean_contexts.jsonl      one row per image, scenarios nested in "scenarios"
//   ROOT/splits/{train,val,test}.jsonl     context rows; their scenarios define the
//                                          image-disjoint splits
//
// Validation is strict: a missing field, a rating outside [1, 5], an unknown modality,
// empty text (Unicode spaces alone count as empty), a duplicate scenario_id, a control
// character (NUL included) in an id, a context row's scenario naming another image_id,
// a missing image file or a malformed line is an error naming FILE:LINE and the field.
// With skip_bad the offending scenario (or image) is skipped and counted in `report`,
// never dropped silently. Images left with fewer than min_scenarios scenarios are
// dropped and counted too.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/jsonl.h"

namespace mms::data {

enum class Modality : int32_t { Text = 0, Image = 1, Both = 2 };
inline constexpr int kNumModalities = 3;
const char* modality_name(Modality m);         // "text" | "image" | "both"
bool parse_modality(const std::string& s, Modality* out);

struct Scenario {
  std::string scenario_id;
  std::string text;
  double mean_rating = 0.0;      // 1..5
  std::vector<int32_t> ratings;  // each 1..5, may be empty if the release omits them
  double rating_std = 0.0;
  Modality modality = Modality::Both;
};

struct ImageRecord {
  std::string image_id;  // as in the release, e.g. "03485.png"
  std::string path;      // ROOT/images/<image_id>
  std::vector<Scenario> scenarios;
};

struct LoadReport {
  int64_t rows_read = 0;            // JSONL rows parsed
  int64_t scenarios_kept = 0;
  int64_t images_kept = 0;
  int64_t images_dropped_few_scenarios = 0;
  BadRows skipped;                  // only filled with skip_bad
  std::string summary() const;      // one line for the log
};

struct Dataset {
  std::vector<ImageRecord> images;
  LoadReport report;
  int64_t num_scenarios() const;
};

struct LoadOptions {
  bool skip_bad = false;          // skip and count bad rows instead of failing
  int64_t min_scenarios = 2;      // images with fewer are dropped (and counted)
  bool check_image_files = true;  // require ROOT/images/<image_id> to exist
  bool decode_images = false;     // also decode every image (catches corrupt files up front)
};

// ROOT from --data (when non-empty) or $MMSCALE_DATA_ROOT; throws when neither is set.
std::string resolve_data_root(const std::string& flag_value);

// One file of either form: rows with a "scenarios" array are context rows, others are
// flat scenario rows grouped by image_id (in order of first appearance).
Dataset load_mmscale_file(const std::string& jsonl_path, const std::string& images_dir,
                          const LoadOptions& options = {});

// ROOT/splits/<split>.jsonl ("train", "val" or "test").
Dataset load_mmscale_split(const std::string& root, const std::string& split, const LoadOptions& options = {});

// The whole release: mmscale_clean_contexts.jsonl if present, else mmscale_clean_flat.jsonl.
Dataset load_mmscale_all(const std::string& root, const LoadOptions& options = {});

}  // namespace mms::data
