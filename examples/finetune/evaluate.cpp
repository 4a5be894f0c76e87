#include "evaluate.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "autograd/api.h"
#include "batch.h"
#include "data/rng.h"
#include "tensor/error.h"

namespace mmsft {

namespace {
mms::losses::Modality to_metrics_modality(int m) {
  switch (m) {
    case 0: return mms::losses::Modality::Text;
    case 1: return mms::losses::Modality::Image;
    case 2: return mms::losses::Modality::Both;
    default: return mms::losses::Modality::Unknown;
  }
}

std::string value_str(double x) {
  if (std::isnan(x)) return "n/a";
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.4f", x);
  return buffer;
}
}  // namespace

Evaluator::Evaluator(const mms::data::Dataset& dataset, const RunData& data, const std::string& ablate,
                     bool trim_text, int64_t batch_lists)
    : dataset_(dataset), ablate_(ablate), trim_text_(trim_text), empty_text_(data.tokenizer->encode("", data.context_length)) {
  mms::data::LoaderOptions lo;
  lo.sampler.batch_lists = batch_lists;
  lo.sampler.list_size = 0;  // every scenario of an image in its list
  lo.sampler.shuffle = false;
  lo.image = data.image;
  lo.context_length = data.context_length;
  lo.threads = 1;
  lo.cache_max_bytes = size_t(512) << 20;
  loader_ = std::make_unique<mms::data::BatchLoader>(dataset, *data.tokenizer, lo);
}

EvalResult Evaluator::run(mms::vlm::PairScorer& model) {
  const bool was_training = model.is_training();
  model.eval();
  mms::NoGradGuard no_grad;
  const mms::Device device = model.logit_scale.device();
  EvalResult result;
  std::vector<mms::losses::PredictionRecord> records;
  loader_->start(0, loader_->sampler().batches_per_epoch());
  mms::data::ListBatch batch;
  while (loader_->next(batch)) {
    trim_tally_.add(prepare_batch(batch, ablate_, empty_text_, trim_text_));
    const BatchTensors t = to_tensors(batch, device);
    const auto out = model.forward(t.pixels, t.input_ids, t.attention_mask, t.list_size);
    const std::vector<double> score = out.score.to_vector<double>();
    const std::vector<float> logits = out.modality_logits.to_vector<float>();  // [B*K, 3]
    for (int64_t b = 0; b < batch.batch_lists; ++b) {
      const mms::data::ImageRecord& image = dataset_.images[batch.image_index[b]];
      for (int64_t k = 0; k < batch.list_size; ++k) {
        const size_t slot = static_cast<size_t>(b * batch.list_size + k);
        if (!batch.valid[slot]) continue;
        const mms::data::Scenario& s = image.scenarios[batch.scenario_index[slot]];
        ScoredPair p;
        p.scenario_id = s.scenario_id;
        p.image_id = image.image_id;
        p.gold_rating = s.mean_rating;
        p.prediction = score[slot];
        p.modality = static_cast<int>(s.modality);
        const float* l = &logits[slot * 3];
        p.predicted_modality = static_cast<int>(std::max_element(l, l + 3) - l);
        result.pairs.push_back(p);
        records.push_back({p.image_id, p.gold_rating, p.prediction, to_metrics_modality(p.modality), p.scenario_id});
      }
    }
  }
  result.metrics = mms::losses::compute_metrics(records);
  model.train(was_training);
  return result;
}

void write_file_atomically(const std::string& path, const std::string& text) {
  const std::string temp = path + ".tmp";
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  MMS_CHECK(fd >= 0, "cannot create ", temp, ": ", std::strerror(errno));
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      ::unlink(temp.c_str());
      mms::fail("writing ", temp, " failed: ", why);
    }
    done += static_cast<size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!synced || ::rename(temp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    ::unlink(temp.c_str());
    mms::fail("cannot write ", path, ": ", why);
  }
}

void write_predictions_jsonl(const std::string& path, const std::vector<ScoredPair>& pairs) {
  static const char* kNames[3] = {"text", "image", "both"};
  std::string text;
  for (const ScoredPair& p : pairs) {
    nlohmann::ordered_json row;
    row["scenario_id"] = p.scenario_id;
    row["image_id"] = p.image_id;
    row["gold_rating"] = p.gold_rating;
    row["prediction"] = p.prediction;
    row["modality"] = kNames[p.modality];
    row["predicted_modality"] = kNames[p.predicted_modality];
    text += row.dump() + "\n";
  }
  write_file_atomically(path, text);
}

std::string format_metrics_table(const mms::losses::Metrics& m, const std::string& title,
                                 const mms::losses::Metrics* baseline) {
  std::ostringstream os;
  char line[200];
  auto row = [&](const char* name, double v, double b, const std::string& note = "") {
    if (baseline)
      std::snprintf(line, sizeof line, "  %-22s %8s  %8s  %s\n", name, value_str(v).c_str(), value_str(b).c_str(),
                    note.c_str());
    else
      std::snprintf(line, sizeof line, "  %-22s %8s  %s\n", name, value_str(v).c_str(), note.c_str());
    os << line;
  };
  const mms::losses::Metrics& r = baseline ? *baseline : m;
  os << title << ": " << m.n_predictions << " scenarios, " << m.n_image_groups << " images\n";
  if (baseline) {
    std::snprintf(line, sizeof line, "  %-22s %8s  %8s\n", "", "model", "random");
    os << line;
  }
  row("ndcg@5", m.ndcg_at_5, r.ndcg_at_5);
  row("mrr", m.mrr, r.mrr);
  row("kendall_tau", m.kendall_tau, r.kendall_tau, "tau-b, mean over " + std::to_string(m.kendall_tau_n) + " images");
  row("pairwise_acc_d0", m.pairwise_acc_d0, r.pairwise_acc_d0, std::to_string(m.pairwise_acc_d0_n) + " pairs");
  row("pairwise_acc_d1", m.pairwise_acc_d1, r.pairwise_acc_d1,
      std::to_string(m.pairwise_acc_d1_n) + " pairs (gold gap >= 1)");
  for (size_t c = 0; c < mms::losses::kModalityPairNames.size(); ++c)
    row((std::string("pairwise_acc ") + mms::losses::kModalityPairNames[c]).c_str(), m.pairwise_acc_by_modality[c],
        r.pairwise_acc_by_modality[c], std::to_string(m.pairwise_acc_by_modality_n[c]) + " pairs");
  row("mae", m.mae, r.mae);
  row("rmse", m.rmse, r.rmse);
  row("auc_acceptability", m.auc_acceptability, r.auc_acceptability, "acceptable = gold >= 2.5");
  row("ece", m.ece, r.ece, "10 bins");
  row("unsafe_rate", m.unsafe_rate, r.unsafe_rate, "unacceptable scenarios scored >= 2.5");
  row("top1_unsafe_rate", m.top1_unsafe_rate, r.top1_unsafe_rate);
  return os.str();
}

mms::losses::Metrics random_scorer_metrics(const std::vector<ScoredPair>& pairs, uint64_t seed) {
  mms::data::SplitMix64 rng(seed, 0x52414E44ull);
  std::vector<mms::losses::PredictionRecord> records;
  for (const ScoredPair& p : pairs)
    records.push_back({p.image_id, p.gold_rating, 1.0 + 4.0 * rng.uniform(), to_metrics_modality(p.modality),
                       p.scenario_id});
  return mms::losses::compute_metrics(records);
}

std::string format_metrics_line(const mms::losses::Metrics& m) {
  std::ostringstream os;
  os << "ndcg@5 " << value_str(m.ndcg_at_5) << "  kendall_tau " << value_str(m.kendall_tau) << "  pairwise_acc_d0 "
     << value_str(m.pairwise_acc_d0) << "  mae " << value_str(m.mae) << "  auc " << value_str(m.auc_acceptability);
  return os.str();
}

}  // namespace mmsft
