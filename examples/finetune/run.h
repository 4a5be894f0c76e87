// One complete run: build (or resume) the model, train, and on a finished run score
// the test split and write metrics.json + predictions_test.jsonl next to the
// checkpoint, train_log.csv and curves.svg in --out.
#pragma once

#include <atomic>
#include <optional>

#include "losses/metrics.h"
#include "options.h"
#include "setup.h"
#include "trainer.h"

namespace mmsft {

struct RunResult {
  Trainer::End end = Trainer::End::Finished;
  int64_t steps = 0;
  double seconds = 0;                              // wall time of training + test evaluation
  std::optional<mms::losses::Metrics> test;        // set when the run finished
  std::optional<mms::losses::Metrics> random;      // a random scorer on the same test pairs
  std::string checkpoint;
};

RunResult run_one(const Options& options, const RunData& data, const std::atomic<bool>* stop, const Logger& log);

}  // namespace mmsft
