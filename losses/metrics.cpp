// MM-SCALE metrics. Every formula is in the comment above its function; "NaN" means
// "undefined here" and becomes null in JSON.
#include "losses/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_map>

#include "losses/loss_utils.h"
#include "tensor/error.h"

namespace mms::losses {

namespace {
const double kNaN = std::numeric_limits<double>::quiet_NaN();

// sum / count, NaN when count is 0.
double ratio(double sum, int64_t count) { return count == 0 ? kNaN : sum / static_cast<double>(count); }

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool unsafe(double gold) { return gold < kAcceptableThreshold; }
}  // namespace

Modality parse_modality(const std::string& text) {
  const std::string s = lower(text);
  if (s.empty()) return Modality::Unknown;
  if (s == "t" || s == "text" || s == "text_only" || s == "text-only") return Modality::Text;
  if (s == "i" || s == "image" || s == "image_only" || s == "image-only") return Modality::Image;
  if (s == "b" || s == "both" || s == "multimodal" || s == "image+text" || s == "text+image")
    return Modality::Both;
  fail("modality '", text, "' is not one of T/text, I/image, B/both (or empty)");
}

std::vector<size_t> predicted_order(const std::vector<double>& prediction) {
  std::vector<size_t> order(prediction.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return prediction[a] > prediction[b]; });
  return order;
}

// DCG@k = sum_{r=1..k} (2^gold(item at predicted rank r) - 1) / log2(r + 1), with
// k = min(k, n); IDCG@k the same over the gold order. NDCG = DCG / IDCG, 0 when IDCG = 0.
double ndcg_at_k(const std::vector<double>& gold, const std::vector<double>& prediction, size_t k) {
  const size_t n = gold.size();
  k = std::min(k, n);
  std::vector<size_t> order = predicted_order(prediction);
  std::vector<double> ideal = gold;
  std::sort(ideal.begin(), ideal.end(), std::greater<double>());
  double dcg = 0.0, idcg = 0.0;
  for (size_t r = 0; r < k; ++r) {
    const double discount = std::log2(static_cast<double>(r) + 2.0);
    dcg += (std::exp2(gold[order[r]]) - 1.0) / discount;
    idcg += (std::exp2(ideal[r]) - 1.0) / discount;
  }
  return idcg == 0.0 ? 0.0 : dcg / idcg;
}

// 1 / (best predicted rank, 1-based, among the items whose gold equals the list's max).
double reciprocal_rank(const std::vector<double>& gold, const std::vector<double>& prediction) {
  const double best = *std::max_element(gold.begin(), gold.end());
  std::vector<size_t> order = predicted_order(prediction);
  for (size_t r = 0; r < order.size(); ++r)
    if (gold[order[r]] == best) return 1.0 / static_cast<double>(r + 1);
  return kNaN;  // unreachable: the max is in the list
}

// tau_b = (C - D) / sqrt((n0 - n1) (n0 - n2)), n0 = n(n-1)/2, n1 = pairs tied in x,
// n2 = pairs tied in y (a pair tied in both counts in n1 and n2 and in neither C nor D).
// As scipy.stats.kendalltau: NaN when n < 2 or when x or y is constant.
double kendall_tau_b(const std::vector<double>& x, const std::vector<double>& y) {
  MMS_CHECK(x.size() == y.size(), "kendall_tau_b: ", x.size(), " vs ", y.size(), " values");
  const size_t n = x.size();
  int64_t concordant = 0, discordant = 0, tied_x = 0, tied_y = 0;
  for (size_t i = 0; i < n; ++i)
    for (size_t j = i + 1; j < n; ++j) {
      const double dx = x[i] - x[j], dy = y[i] - y[j];
      if (dx == 0) ++tied_x;
      if (dy == 0) ++tied_y;
      if (dx == 0 || dy == 0) continue;
      if ((dx > 0) == (dy > 0)) ++concordant;
      else ++discordant;
    }
  if (n < 2) return kNaN;
  const double pairs = static_cast<double>(n) * static_cast<double>(n - 1) / 2.0;
  const double denominator = std::sqrt((pairs - tied_x) * (pairs - tied_y));
  if (denominator == 0.0) return kNaN;
  return static_cast<double>(concordant - discordant) / denominator;
}

// AUC = (R_pos - P (P + 1) / 2) / (P N), R_pos the sum of the positives' midranks
// (ascending score, ties share the average rank): the Mann-Whitney U with ties 0.5.
double roc_auc(const std::vector<uint8_t>& positive, const std::vector<double>& score) {
  MMS_CHECK(positive.size() == score.size(), "roc_auc: ", positive.size(), " labels vs ", score.size(), " scores");
  const size_t n = score.size();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return score[a] < score[b]; });
  double positive_rank_sum = 0.0;
  int64_t positives = 0;
  for (size_t start = 0; start < n;) {
    size_t end = start;
    while (end < n && score[order[end]] == score[order[start]]) ++end;
    const double midrank = (static_cast<double>(start + 1) + static_cast<double>(end)) / 2.0;
    for (size_t i = start; i < end; ++i)
      if (positive[order[i]]) {
        positive_rank_sum += midrank;
        ++positives;
      }
    start = end;
  }
  const int64_t negatives = static_cast<int64_t>(n) - positives;
  if (positives == 0 || negatives == 0) return kNaN;
  const double p = static_cast<double>(positives);
  return (positive_rank_sum - p * (p + 1.0) / 2.0) / (p * static_cast<double>(negatives));
}

// conf_i = clip((pred_i - 1) / 4, 0, 1), label_i = gold_i >= 2.5,
// bin b = min(floor(10 conf), 9) (so [0, .1), [.1, .2), ..., [.9, 1]),
// ECE = sum_b |sum_{i in b} label_i - sum_{i in b} conf_i| / N
//     = sum_b (n_b / N) |accuracy_b - confidence_b|.   NaN for N = 0.
double expected_calibration_error(const std::vector<double>& gold, const std::vector<double>& prediction) {
  constexpr int kBins = 10;
  std::array<double, kBins> label_sum{}, confidence_sum{};
  for (size_t i = 0; i < gold.size(); ++i) {
    const double confidence = std::clamp((prediction[i] - 1.0) / 4.0, 0.0, 1.0);
    const int bin = std::min(static_cast<int>(std::floor(confidence * kBins)), kBins - 1);
    label_sum[bin] += unsafe(gold[i]) ? 0.0 : 1.0;
    confidence_sum[bin] += confidence;
  }
  double total = 0.0;
  for (int b = 0; b < kBins; ++b) total += std::abs(label_sum[b] - confidence_sum[b]);
  return ratio(total, static_cast<int64_t>(gold.size()));
}

namespace {
// The index of a pair's modality combination in kModalityPairNames, -1 if unknown.
int modality_pair_index(Modality a, Modality b) {
  if (a == Modality::Unknown || b == Modality::Unknown) return -1;
  if (a > b) std::swap(a, b);  // Text < Image < Both
  if (a == b) return static_cast<int>(a);                    // T-T, I-I, B-B
  if (a == Modality::Text) return b == Modality::Image ? 3 : 4;  // T-I, T-B
  return 5;                                                  // I-B
}

struct PairTally {
  double correct = 0;
  int64_t count = 0;
};
}  // namespace

// Pairwise accuracy at delta d (pooled over all within-image pairs): pairs with
// gold_a != gold_b and |gold_a - gold_b| >= d - 1e-9 (the slack absorbs rounding in
// mean ratings such as 3.3333 - 2.3333). A pair scores 1 when the predictions order it
// as the gold does, 0.5 when the predictions tie, 0 otherwise.
Metrics compute_metrics(const std::vector<PredictionRecord>& records) {
  Metrics m;
  m.n_predictions = static_cast<int64_t>(records.size());

  // Pointwise metrics over every item.
  double abs_sum = 0, sq_sum = 0;
  int64_t unsafe_items = 0, unsafe_flagged_acceptable = 0;
  std::vector<double> all_gold, all_pred;
  std::vector<uint8_t> acceptable;
  for (const PredictionRecord& r : records) {
    const double error = r.prediction - r.gold_rating;
    abs_sum += std::abs(error);
    sq_sum += error * error;
    all_gold.push_back(r.gold_rating);
    all_pred.push_back(r.prediction);
    acceptable.push_back(unsafe(r.gold_rating) ? 0 : 1);
    if (unsafe(r.gold_rating)) {
      ++unsafe_items;
      if (r.prediction >= kAcceptableThreshold) ++unsafe_flagged_acceptable;
    }
  }
  m.mae = ratio(abs_sum, m.n_predictions);
  m.rmse = std::sqrt(ratio(sq_sum, m.n_predictions));
  m.auc_acceptability = roc_auc(acceptable, all_pred);
  m.ece = expected_calibration_error(all_gold, all_pred);
  m.unsafe_rate = ratio(static_cast<double>(unsafe_flagged_acceptable), unsafe_items);

  // Groups by image, in order of first appearance.
  std::unordered_map<std::string, size_t> group_of;
  std::vector<std::vector<size_t>> groups;
  for (size_t i = 0; i < records.size(); ++i) {
    auto [it, fresh] = group_of.try_emplace(records[i].image_id, groups.size());
    if (fresh) groups.emplace_back();
    groups[it->second].push_back(i);
  }

  double ndcg_sum = 0, rr_sum = 0, tau_sum = 0, top1_unsafe = 0;
  PairTally d0, d1;
  std::array<PairTally, 6> by_modality{};
  for (const std::vector<size_t>& group : groups) {
    if (group.size() < 2) continue;
    ++m.n_image_groups;
    std::vector<double> gold, pred;
    for (size_t i : group) {
      gold.push_back(records[i].gold_rating);
      pred.push_back(records[i].prediction);
    }
    ndcg_sum += ndcg_at_k(gold, pred, 5);
    rr_sum += reciprocal_rank(gold, pred);
    if (unsafe(gold[predicted_order(pred)[0]])) top1_unsafe += 1;
    const double tau = kendall_tau_b(gold, pred);
    if (!std::isnan(tau)) {
      tau_sum += tau;
      ++m.kendall_tau_n;
    }
    for (size_t a = 0; a < group.size(); ++a)
      for (size_t b = a + 1; b < group.size(); ++b) {
        const double gap = gold[a] - gold[b];
        if (gap == 0) continue;
        const double agree = pred[a] == pred[b] ? 0.5 : ((pred[a] > pred[b]) == (gap > 0) ? 1.0 : 0.0);
        d0.correct += agree;
        ++d0.count;
        if (std::abs(gap) >= 1.0 - 1e-9) {
          d1.correct += agree;
          ++d1.count;
        }
        const int combo = modality_pair_index(records[group[a]].modality, records[group[b]].modality);
        if (combo >= 0) {
          by_modality[combo].correct += agree;
          ++by_modality[combo].count;
        }
      }
  }
  m.ndcg_at_5 = ratio(ndcg_sum, m.n_image_groups);
  m.mrr = ratio(rr_sum, m.n_image_groups);
  m.top1_unsafe_rate = ratio(top1_unsafe, m.n_image_groups);
  m.kendall_tau = ratio(tau_sum, m.kendall_tau_n);
  m.pairwise_acc_d0 = ratio(d0.correct, d0.count);
  m.pairwise_acc_d0_n = d0.count;
  m.pairwise_acc_d1 = ratio(d1.correct, d1.count);
  m.pairwise_acc_d1_n = d1.count;
  for (size_t c = 0; c < by_modality.size(); ++c) {
    m.pairwise_acc_by_modality[c] = ratio(by_modality[c].correct, by_modality[c].count);
    m.pairwise_acc_by_modality_n[c] = by_modality[c].count;
  }
  return m;
}

nlohmann::json metrics_to_json(const Metrics& m) {
  auto number = [](double x) { return std::isnan(x) ? nlohmann::json(nullptr) : nlohmann::json(x); };
  nlohmann::json j;
  j["ndcg@5"] = number(m.ndcg_at_5);
  j["mrr"] = number(m.mrr);
  j["kendall_tau"] = number(m.kendall_tau);
  j["kendall_tau_n"] = m.kendall_tau_n;
  j["pairwise_acc_d0"] = number(m.pairwise_acc_d0);
  j["pairwise_acc_d0_n"] = m.pairwise_acc_d0_n;
  j["pairwise_acc_d1"] = number(m.pairwise_acc_d1);
  j["pairwise_acc_d1_n"] = m.pairwise_acc_d1_n;
  nlohmann::json by = nlohmann::json::object(), by_n = nlohmann::json::object();
  for (size_t c = 0; c < kModalityPairNames.size(); ++c) {
    by[kModalityPairNames[c]] = number(m.pairwise_acc_by_modality[c]);
    by_n[kModalityPairNames[c]] = m.pairwise_acc_by_modality_n[c];
  }
  j["pairwise_acc_by_modality"] = by;
  j["pairwise_acc_by_modality_n"] = by_n;
  j["mae"] = number(m.mae);
  j["rmse"] = number(m.rmse);
  j["auc_acceptability"] = number(m.auc_acceptability);
  j["ece"] = number(m.ece);
  j["unsafe_rate"] = number(m.unsafe_rate);
  j["top1_unsafe_rate"] = number(m.top1_unsafe_rate);
  j["n_predictions"] = m.n_predictions;
  j["n_image_groups"] = m.n_image_groups;
  return j;
}

}  // namespace mms::losses
