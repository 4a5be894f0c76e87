#include "compare.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>

#include "evaluate.h"
#include "run.h"
#include "tensor/error.h"

namespace mmsft {

namespace fs = std::filesystem;

namespace {

// The table's columns: metrics_to_json names, in the order of the issue.
const std::vector<std::string>& columns() {
  static const std::vector<std::string> names{"ndcg@5",          "mrr",         "kendall_tau",
                                              "pairwise_acc_d0", "pairwise_acc_d1", "auc_acceptability",
                                              "ece",             "unsafe_rate", "mae"};
  return names;
}

struct Summary {
  double mean = NAN, std = NAN;
  int n = 0;
};

// Mean and sample standard deviation (n - 1; 0 for one value) of the finite values.
Summary summarise(const std::vector<double>& values) {
  Summary s;
  double sum = 0;
  for (double v : values)
    if (std::isfinite(v)) {
      sum += v;
      ++s.n;
    }
  if (s.n == 0) return s;
  s.mean = sum / s.n;
  double sq = 0;
  for (double v : values)
    if (std::isfinite(v)) sq += (v - s.mean) * (v - s.mean);
  s.std = s.n > 1 ? std::sqrt(sq / (s.n - 1)) : 0.0;
  return s;
}

double metric_value(const nlohmann::json& m, const std::string& name) {
  return m.contains(name) && m[name].is_number() ? m[name].get<double>() : NAN;
}

// OUT/metrics.json of a finished run whose settings and inputs match (else nullopt).
std::optional<nlohmann::json> finished_run(const Options& o, const RunData& data) {
  const fs::path path = fs::path(o.out) / "metrics.json";
  if (!fs::exists(path)) return std::nullopt;
  nlohmann::json j;
  try {
    std::ifstream in(path);
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
  if (!j.contains("config") || !j["config"].is_object()) return std::nullopt;
  const nlohmann::json want = o.trajectory_json();
  // A run written before a setting existed (e.g. trim_text) ran with its default.
  const nlohmann::json defaults = Options().trajectory_json();
  for (auto it = want.begin(); it != want.end(); ++it) {
    const nlohmann::json& theirs = j["config"].contains(it.key()) ? j["config"][it.key()] : defaults[it.key()];
    if (theirs != it.value()) return std::nullopt;
  }
  // Trained on other data or with another tokenizer: not this comparison's run. (A
  // metrics.json written before the fingerprints existed is taken on its settings.)
  if (j.contains("inputs") && j["inputs"] != data.inputs_json()) return std::nullopt;
  return j;
}

}  // namespace

bool run_compare(const Options& base, const RunData& data, const std::atomic<bool>* stop, const Logger& log) {
  // results[objective][seed index] = test metrics JSON
  std::map<std::string, std::vector<nlohmann::json>> results;
  nlohmann::ordered_json runs = nlohmann::ordered_json::array();
  for (int s = 0; s < base.seeds; ++s) {
    for (const std::string& objective : compare_objectives()) {
      Options o = base;
      o.compare = false;
      o.compare_part = true;
      o.objective = objective;
      o.seed = base.seed + static_cast<uint64_t>(s);
      std::string name = objective;
      for (char& c : name)
        if (c == '+') c = '_';
      o.out = (fs::path(base.out) / "compare" / (name + "-seed" + std::to_string(o.seed))).string();
      // A run finished earlier with the same settings (an interrupted --compare, or
      // seeds trained by parallel processes) is reused, not trained again.
      if (std::optional<nlohmann::json> m = finished_run(o, data)) {
        log(mms::concat("compare: ", objective, ", seed ", o.seed, ": reusing ", o.out, "/metrics.json"));
        results[objective].push_back(*m);
        runs.push_back({{"objective", objective}, {"seed", o.seed}, {"out", o.out}, {"reused", true}, {"test", *m}});
        continue;
      }
      log(mms::concat("compare: ", objective, ", seed ", o.seed, " -> ", o.out));
      const RunResult r = run_one(o, data, stop, log);
      if (!r.test) return false;
      nlohmann::json m = mms::losses::metrics_to_json(*r.test);
      log(mms::concat("compare: ", objective, " seed ", o.seed, " test ", format_metrics_line(*r.test), " (",
                      static_cast<int64_t>(r.seconds), " s)"));
      results[objective].push_back(m);
      runs.push_back({{"objective", objective}, {"seed", o.seed}, {"out", o.out}, {"seconds", r.seconds},
                      {"test", m}});
    }
  }

  // The table.
  std::string table = mms::concat("\nMM-SCALE objective comparison on ", data.synthetic ? "the synthetic stand-in" : data.root,
                                  " (test split; ", base.seeds, base.seeds > 1 ? " seeds, mean +/- std" : " seed",
                                  "; ablate ", base.ablate.empty() ? "none" : base.ablate, ")\n");
  char cell[64];
  std::snprintf(cell, sizeof cell, "%-12s", "objective");
  table += cell;
  for (const std::string& c : columns()) {
    std::snprintf(cell, sizeof cell, base.seeds > 1 ? " %17s" : " %10s", c.c_str());
    table += cell;
  }
  table += "\n";
  nlohmann::ordered_json summary = nlohmann::ordered_json::object();
  for (const std::string& objective : compare_objectives()) {
    std::snprintf(cell, sizeof cell, "%-12s", objective.c_str());
    table += cell;
    for (const std::string& c : columns()) {
      std::vector<double> values;
      for (const auto& m : results[objective]) values.push_back(metric_value(m, c));
      const Summary s = summarise(values);
      if (base.seeds > 1) std::snprintf(cell, sizeof cell, " %8.4f +/- %.4f", s.mean, s.std);
      else std::snprintf(cell, sizeof cell, " %10.4f", s.mean);
      table += cell;
      summary[objective][c] = {{"mean", std::isfinite(s.mean) ? nlohmann::json(s.mean) : nlohmann::json(nullptr)},
                               {"std", std::isfinite(s.std) ? nlohmann::json(s.std) : nlohmann::json(nullptr)},
                               {"values", values}};
    }
    table += "\n";
  }
  std::printf("%s", table.c_str());
  std::fflush(stdout);

  nlohmann::ordered_json j;
  j["seeds"] = base.seeds;
  j["first_seed"] = base.seed;
  j["objectives"] = compare_objectives();
  j["columns"] = columns();
  j["summary"] = summary;
  j["runs"] = runs;
  j["config"] = base.to_json();
  write_file_atomically((fs::path(base.out) / "compare.json").string(), j.dump(2) + "\n");
  log("compare: wrote " + (fs::path(base.out) / "compare.json").string());
  return true;
}

}  // namespace mmsft
