// Scoring a whole split with the current model: every (image, scenario) pair once, in
// dataset order, each image with all its scenarios in one list (padding ignored), in
// eval mode without gradients. Gives the MM-SCALE metrics (losses/metrics.h) and the
// rows of predictions_test.jsonl.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "batch.h"
#include "data/batching.h"
#include "losses/metrics.h"
#include "setup.h"
#include "vlm/pair_scorer.h"

namespace mmsft {

struct ScoredPair {
  std::string scenario_id, image_id;
  double gold_rating = 0, prediction = 0;
  int modality = 0, predicted_modality = 0;  // data::Modality: 0 text, 1 image, 2 both
};

struct EvalResult {
  std::vector<ScoredPair> pairs;
  mms::losses::Metrics metrics;
};

// Keeps one loader (and its preprocessed-image cache) per split, so repeated
// validation does not decode the images again. Batches go through prepare_batch
// (batch.h): the ablation, then with trim_text the cut to the longest real text.
class Evaluator {
 public:
  Evaluator(const mms::data::Dataset& dataset, const RunData& data, const std::string& ablate,
            bool trim_text = false, int64_t batch_lists = 32);
  EvalResult run(mms::vlm::PairScorer& model);
  const TrimTally& text_trim() const { return trim_tally_; }  // over every run() so far

 private:
  const mms::data::Dataset& dataset_;
  std::string ablate_;
  bool trim_text_ = false;
  TrimTally trim_tally_;
  mms::data::TokenizedText empty_text_;
  std::unique_ptr<mms::data::BatchLoader> loader_;
};

// One JSON object per line: scenario_id, image_id, gold_rating, prediction, modality,
// predicted_modality (modalities as "text" | "image" | "both"). Written atomically.
void write_predictions_jsonl(const std::string& path, const std::vector<ScoredPair>& pairs);

// The metrics table printed at the end of a run; with `baseline`, a second column.
std::string format_metrics_table(const mms::losses::Metrics& metrics, const std::string& title,
                                 const mms::losses::Metrics* baseline = nullptr);
// The reference point: the same pairs scored uniformly at random in [1, 5] (seeded).
mms::losses::Metrics random_scorer_metrics(const std::vector<ScoredPair>& pairs, uint64_t seed);
// One line for the progress log.
std::string format_metrics_line(const mms::losses::Metrics& metrics);

// Writes text to path through a temporary file + fsync + rename.
void write_file_atomically(const std::string& path, const std::string& text);

}  // namespace mmsft
