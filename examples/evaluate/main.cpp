// evaluate: MM-SCALE metrics for a predictions file.
//
//   evaluate --predictions P.jsonl [--out metrics.json]
//
// P.jsonl holds one JSON object per line with image_id, gold_rating, prediction (null
// = not scored: counted and skipped) and optional modality, scenario_id (format and
// errors: losses/predictions.h; formulas: losses/metrics.{h,cpp}). Prints a table and,
// with --out, writes the metrics as one JSON object (the field names of the public
// MM-SCALE evaluation scripts, plus n_null_predictions). Exit status 1 on bad input.
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "losses/metrics.h"
#include "losses/predictions.h"
#include "tensor/error.h"

namespace {

std::string value_str(double x) {
  if (std::isnan(x)) return "n/a";
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.4f", x);
  return buffer;
}

void print_row(const std::string& name, const std::string& value, const std::string& note = "") {
  std::printf("  %-28s %10s  %s\n", name.c_str(), value.c_str(), note.c_str());
}

void print_table(const mms::losses::Metrics& m, int64_t n_null) {
  using mms::losses::kModalityPairNames;
  std::printf("MM-SCALE evaluation: %lld predictions (%lld null skipped), %lld image groups\n",
              static_cast<long long>(m.n_predictions), static_cast<long long>(n_null),
              static_cast<long long>(m.n_image_groups));
  std::printf("ranking (per image, >= 2 items)\n");
  print_row("ndcg@5", value_str(m.ndcg_at_5));
  print_row("mrr", value_str(m.mrr));
  print_row("kendall_tau", value_str(m.kendall_tau), "tau-b over " + std::to_string(m.kendall_tau_n) + " images");
  print_row("pairwise_acc_d0", value_str(m.pairwise_acc_d0), std::to_string(m.pairwise_acc_d0_n) + " pairs");
  print_row("pairwise_acc_d1", value_str(m.pairwise_acc_d1), std::to_string(m.pairwise_acc_d1_n) + " pairs");
  for (size_t c = 0; c < kModalityPairNames.size(); ++c)
    print_row(std::string("pairwise_acc ") + kModalityPairNames[c], value_str(m.pairwise_acc_by_modality[c]),
              std::to_string(m.pairwise_acc_by_modality_n[c]) + " pairs");
  std::printf("score and acceptability (all items, acceptable = rating >= 2.5)\n");
  print_row("mae", value_str(m.mae));
  print_row("rmse", value_str(m.rmse));
  print_row("auc_acceptability", value_str(m.auc_acceptability));
  print_row("ece", value_str(m.ece), "10 bins");
  print_row("unsafe_rate", value_str(m.unsafe_rate), "unacceptable items scored >= 2.5");
  print_row("top1_unsafe_rate", value_str(m.top1_unsafe_rate), "images whose top item is unacceptable");
}

// temp file + rename, so a crash never leaves a half-written metrics file.
void write_json_atomically(const std::string& path, const nlohmann::json& j) {
  const std::string temp = path + ".tmp";
  {
    std::ofstream out(temp);
    if (!out) throw mms::Error("evaluate: cannot write '" + temp + "'");
    out << j.dump(2) << "\n";
    if (!out) throw mms::Error("evaluate: writing '" + temp + "' failed");
  }
  std::filesystem::rename(temp, path);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"MM-SCALE metrics for a JSONL predictions file"};
  std::string predictions_path, out_path;
  app.add_option("--predictions", predictions_path, "JSONL: image_id, gold_rating, prediction[, modality, scenario_id]")
      ->required();
  app.add_option("--out", out_path, "write the metrics JSON here");
  CLI11_PARSE(app, argc, argv);

  try {
    mms::losses::PredictionSet set = mms::losses::read_predictions(predictions_path);
    mms::losses::Metrics metrics = mms::losses::compute_metrics(set.records);
    print_table(metrics, set.n_null_predictions);
    if (!out_path.empty()) {
      nlohmann::json j = mms::losses::metrics_to_json(metrics);
      j["n_null_predictions"] = set.n_null_predictions;
      write_json_atomically(out_path, j);
      std::printf("wrote %s\n", out_path.c_str());
    }
  } catch (const std::exception& e) {
    std::cerr << "evaluate: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
