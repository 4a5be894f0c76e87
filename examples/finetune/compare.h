// --compare: the paper's central comparison. Trains listmle+mse, mse, bce and pairwise
// with the same data, budget and seed(s) (each run in OUT/compare/<objective>-seed<S>),
// prints one table (rows objectives, columns the headline metrics, mean +/- std over
// --seeds) and writes OUT/compare.json with every run's test metrics.
#pragma once

#include <atomic>

#include "options.h"
#include "setup.h"

namespace mmsft {

// Returns false when interrupted (the finished runs are kept; the table is not printed).
bool run_compare(const Options& options, const RunData& data, const std::atomic<bool>* stop, const Logger& log);

}  // namespace mmsft
