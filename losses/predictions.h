// Reading a predictions file for evaluation: JSON lines, one object per scored item,
//   {"image_id": "img_001", "gold_rating": 3.4, "prediction": 2.9,
//    "modality": "T", "scenario_id": "s17"}
// image_id (string or integer), gold_rating (number) and prediction (number or null)
// are required; modality (see parse_modality) and scenario_id (string or integer) are
// optional and may be null. Blank lines are skipped. A row whose prediction is null is
// counted in n_null_predictions and left out. Anything else that is wrong (bad JSON, a
// missing or mistyped field, a non-finite number) is an mms::Error naming the file and
// the 1-based line: "preds.jsonl:7: gold_rating must be a number, got \"high\"".
#pragma once

#include <cstdint>
#include <istream>
#include <string>
#include <vector>

#include "losses/metrics.h"

namespace mms::losses {

struct PredictionSet {
  std::vector<PredictionRecord> records;
  int64_t n_null_predictions = 0;
};

PredictionSet read_predictions(const std::string& path);
// The same from a stream; `name` is used in error messages.
PredictionSet read_predictions(std::istream& in, const std::string& name);

}  // namespace mms::losses
