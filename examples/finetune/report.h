// What a run leaves behind besides the checkpoint: train_log.csv (one row per logged
// step) and curves.svg (loss and validation NDCG@5 / pairwise accuracy over steps),
// a self-contained SVG that any browser shows.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mmsft {

struct LogRow {
  int64_t step = 0;
  double loss = 0, loss_listmle = 0, loss_mse = 0, loss_modality = 0, loss_bce = 0, loss_pairwise = 0;
  double lr = 0, grad_norm = 0, pairs_per_second = 0;
  std::optional<double> val_ndcg5, val_pairwise_acc;  // only on evaluation steps
};

// Writes (overwrites) the CSV with a header line; empty cells for missing evaluations.
void write_train_log(const std::string& path, const std::vector<LogRow>& rows);
// Two panels side by side: training loss, and validation NDCG@5 + pairwise accuracy.
void write_curves_svg(const std::string& path, const std::vector<LogRow>& rows, const std::string& title);

}  // namespace mmsft
