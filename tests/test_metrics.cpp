// MM-SCALE metrics: a small prediction set worked out by hand (ties in gold and in
// predictions, a single-item image, an all-equal image), SciPy/scikit-learn reference
// values for Kendall tau-b and ROC AUC, and the predictions reader on malformed input.
#include <doctest/doctest.h>

#include <cmath>
#include <sstream>

#include "losses/metrics.h"
#include "losses/predictions.h"
#include "tensor/error.h"

using namespace mms;
using namespace mms::losses;

namespace {
constexpr double kTol = 1e-12;
PredictionRecord item(const char* image, double gold, double pred, Modality modality) {
  return {image, gold, pred, modality, ""};
}
}  // namespace

TEST_CASE("metrics: building blocks by hand") {
  // Stable order: equal predictions keep input order.
  CHECK(predicted_order({3.5, 3.5, 2.0, 4.0}) == std::vector<size_t>{3, 0, 1, 2});
  // NDCG with k clamped to the list length; a perfect order is 1.
  CHECK(ndcg_at_k({1, 2, 3}, {1, 2, 3}, 5) == doctest::Approx(1.0).epsilon(kTol));
  // 2 items, reversed: DCG = 1 + 3/log2(3), IDCG = 3 + 1/log2(3).
  CHECK(ndcg_at_k({1, 2}, {2, 1}, 5) ==
        doctest::Approx((1 + 3 / std::log2(3.0)) / (3 + 1 / std::log2(3.0))).epsilon(kTol));
  CHECK(ndcg_at_k({0, 0}, {2, 1}, 5) == 0.0);  // IDCG = 0 -> 0
  // k = 1 looks at the top item only: gain 2^1-1 vs ideal 2^3-1.
  CHECK(ndcg_at_k({1, 3, 2}, {9, 1, 5}, 1) == doctest::Approx(1.0 / 7.0).epsilon(kTol));
  // MRR: the best of the tied maxima counts; prediction ties broken by input order.
  CHECK(reciprocal_rank({2, 5, 5}, {3, 1, 2}) == doctest::Approx(0.5).epsilon(kTol));
  CHECK(reciprocal_rank({5, 1, 5}, {1, 1, 1}) == doctest::Approx(1.0).epsilon(kTol));
  // tau-b by hand: x=[4,2,2.5,1], y=[3.5,3.5,2,1]: C=4, D=1, one pair tied in y only
  // -> (4 - 1) / sqrt(6 * 5).
  CHECK(kendall_tau_b({4, 2, 2.5, 1}, {3.5, 3.5, 2, 1}) == doctest::Approx(3 / std::sqrt(30.0)).epsilon(kTol));
  CHECK(std::isnan(kendall_tau_b({3, 3}, {1, 2})));
  CHECK(std::isnan(kendall_tau_b({1}, {1})));
  // AUC by hand: positives {3, 2}, negatives {2, 1}: pairs 1 + 1 + 0.5 + 1 = 3.5 of 4.
  CHECK(roc_auc({1, 1, 0, 0}, {3, 2, 2, 1}) == doctest::Approx(0.875).epsilon(kTol));
  CHECK(std::isnan(roc_auc({1, 1}, {3, 2})));
  // ECE by hand: preds 5 and 1 -> confidence 1 (bin 9) and 0 (bin 0), labels 1 and 0.
  CHECK(expected_calibration_error({3, 1}, {5, 1}) == 0.0);
  // pred 3 -> confidence 0.5 (bin 5), label 1: |1 - 0.5| / 1.
  CHECK(expected_calibration_error({4}, {3}) == doctest::Approx(0.5).epsilon(kTol));
  CHECK(parse_modality("text") == Modality::Text);
  CHECK(parse_modality("I") == Modality::Image);
  CHECK(parse_modality("Both") == Modality::Both);
  CHECK(parse_modality("") == Modality::Unknown);
  CHECK_THROWS_WITH_AS(parse_modality("audio"), doctest::Contains("modality 'audio'"), Error);
}

TEST_CASE("metrics: Kendall tau-b and AUC match SciPy / scikit-learn") {
  // Produced once by tools/make_metrics_reference.py (scipy 1.17.1, scikit-learn 1.9.1):
  // scipy.stats.kendalltau (variant b) and sklearn.metrics.roc_auc_score on these inputs.
  CHECK(kendall_tau_b({1, 2, 3, 4, 5}, {5, 6, 7, 8, 7}) == doctest::Approx(0.7378647873726218).epsilon(kTol));
  CHECK(kendall_tau_b({3, 3, 1, 2, 2, 5}, {1.5, 2, 2, 0.5, 2, 3}) ==
        doctest::Approx(0.3202563076101743).epsilon(kTol));
  CHECK(kendall_tau_b({1, 1, 2, 2}, {1, 2, 1, 2}) == 0.0);
  CHECK(kendall_tau_b({2.5, 4, 1, 3.6667, 4}, {2.9, 3.1, 1.2, 3.1, 3.8}) ==
        doctest::Approx(0.8888888888888888).epsilon(kTol));
  CHECK(kendall_tau_b({4.2, 1.0, 3.3, 2.0, 4.9, 2.0, 1.0}, {3.0, 1.5, 3.0, 1.5, 4.0, 2.2, 1.5}) ==
        doctest::Approx(0.8902638145194515).epsilon(kTol));
  CHECK(std::isnan(kendall_tau_b({2, 2, 2}, {1, 2, 3})));  // scipy: nan
  const std::vector<double> gold{1, 3, 2.5, 2, 4, 1.5, 3, 2.4, 4.5, 1.2};
  const std::vector<double> pred{1.2, 3.0, 2.0, 2.0, 3.0, 2.5, 1.2, 3.0, 4.1, 2.5};
  std::vector<uint8_t> positive;
  for (double g : gold) positive.push_back(g >= 2.5);
  CHECK(roc_auc(positive, pred) == doctest::Approx(0.64).epsilon(kTol));
}

TEST_CASE("metrics: a full prediction set worked out by hand") {
  // Image A: gold [4, 2, 2.5, 1], pred [3.5, 3.5, 2, 1] (a prediction tie), T I B T.
  // Image B: gold [2, 2, 4.5], pred [4.2, 1, 4] (a gold tie; an unsafe item on top), I I B.
  // Image C: one item (left out of the per-image metrics). Image D: gold [3, 3] (tau undefined).
  std::vector<PredictionRecord> rows{
      item("A", 4, 3.5, Modality::Text), item("A", 2, 3.5, Modality::Image),
      item("B", 2, 4.2, Modality::Image), item("A", 2.5, 2.0, Modality::Both),
      item("B", 2, 1.0, Modality::Image), item("A", 1, 1.0, Modality::Text),
      item("C", 1.5, 3.0, Modality::Text), item("B", 4.5, 4.0, Modality::Both),
      item("D", 3, 2.0, Modality::Both), item("D", 3, 4.0, Modality::Both)};
  Metrics m = compute_metrics(rows);
  CHECK(m.n_predictions == 10);
  CHECK(m.n_image_groups == 3);  // A, B, D
  // NDCG@5: A = 19.6518930 / 19.8688635 (gains 15, 3, 2^2.5-1, 1 in predicted order vs
  // 15, 2^2.5-1, 3, 1), B = 18.1454463 / 25.0202063, D = 1. (A Python re-implementation
  // gives 0.9890818141252697, 0.7252290684301712, 1.)
  CHECK(m.ndcg_at_5 == doctest::Approx((0.9890818141252697 + 0.7252290684301712 + 1.0) / 3).epsilon(kTol));
  CHECK(m.mrr == doctest::Approx((1.0 + 0.5 + 1.0) / 3).epsilon(kTol));  // B's best item is 2nd
  // tau: A = 3 / sqrt(30); B = (1 - 1) / sqrt(2 * 3) = 0; D undefined.
  CHECK(m.kendall_tau_n == 2);
  CHECK(m.kendall_tau == doctest::Approx((3 / std::sqrt(30.0) + 0.0) / 2).epsilon(kTol));
  // Pairs with distinct gold: A has 6 (scores 0.5 tie, 1, 1, 0, 1, 1), B has 2 (0, 1).
  CHECK(m.pairwise_acc_d0_n == 8);
  CHECK(m.pairwise_acc_d0 == doctest::Approx(5.5 / 8).epsilon(kTol));
  // Gap >= 1 drops A's pair (2, 2.5), which scored 0.
  CHECK(m.pairwise_acc_d1_n == 7);
  CHECK(m.pairwise_acc_d1 == doctest::Approx(5.5 / 7).epsilon(kTol));
  // By modality: T-T {1}, T-I {0.5, 1}, T-B {1, 1}, I-B {0 (A), 0 (B), 1 (B)}; I-I, B-B none.
  CHECK(m.pairwise_acc_by_modality[0] == doctest::Approx(1.0).epsilon(kTol));
  CHECK(m.pairwise_acc_by_modality_n[0] == 1);
  CHECK(std::isnan(m.pairwise_acc_by_modality[1]));
  CHECK(m.pairwise_acc_by_modality_n[1] == 0);
  CHECK(std::isnan(m.pairwise_acc_by_modality[2]));
  CHECK(m.pairwise_acc_by_modality[3] == doctest::Approx(0.75).epsilon(kTol));
  CHECK(m.pairwise_acc_by_modality[4] == doctest::Approx(1.0).epsilon(kTol));
  CHECK(m.pairwise_acc_by_modality[5] == doctest::Approx(1.0 / 3).epsilon(kTol));
  CHECK(m.pairwise_acc_by_modality_n[5] == 3);
  // Pointwise over all 10: |errors| sum 9.7, squares sum 13.09.
  CHECK(m.mae == doctest::Approx(0.97).epsilon(kTol));
  CHECK(m.rmse == doctest::Approx(std::sqrt(1.309)).epsilon(kTol));
  // AUC: positives' preds {3.5, 2, 4, 2, 4} vs negatives' {3.5, 1, 4.2, 1, 3}: 15.5 / 25
  // (sklearn.metrics.roc_auc_score agrees: 0.62).
  CHECK(m.auc_acceptability == doctest::Approx(0.62).epsilon(kTol));
  // ECE: bins 0 {0,0 | 0,0}, 2 {.25,.25 | 1,1}, 5 {.5 | 0}, 6 {.625,.625 | 1,0},
  // 7 {.75,.75 | 1,1}, 8 {.8 | 0}: (0 + 1.5 + 0.5 + 0.25 + 0.5 + 0.8) / 10.
  CHECK(m.ece == doctest::Approx(0.355).epsilon(kTol));
  // Unsafe items (gold < 2.5): A 2 (3.5), A 1 (1), B 2 (4.2), B 2 (1), C 1.5 (3): 3 of 5 >= 2.5.
  CHECK(m.unsafe_rate == doctest::Approx(0.6).epsilon(kTol));
  CHECK(m.top1_unsafe_rate == doctest::Approx(1.0 / 3).epsilon(kTol));  // B's top item

  nlohmann::json j = metrics_to_json(m);
  for (const char* key : {"ndcg@5", "mrr", "kendall_tau", "kendall_tau_n", "pairwise_acc_d0", "pairwise_acc_d1",
                          "pairwise_acc_by_modality", "mae", "rmse", "auc_acceptability", "ece", "unsafe_rate",
                          "top1_unsafe_rate", "n_predictions", "n_image_groups"})
    CHECK_MESSAGE(j.contains(key), key);
  CHECK(j["pairwise_acc_by_modality"]["I-I"].is_null());
  CHECK(j["pairwise_acc_by_modality"]["T-I"].get<double>() == doctest::Approx(0.75));
}

TEST_CASE("metrics: empty and one-class sets give NaN, not 0") {
  Metrics empty = compute_metrics({});
  CHECK(empty.n_predictions == 0);
  CHECK(std::isnan(empty.mae));
  CHECK(std::isnan(empty.ndcg_at_5));
  CHECK(std::isnan(empty.ece));
  Metrics safe = compute_metrics({item("A", 4, 3, Modality::Unknown), item("A", 3, 4, Modality::Unknown)});
  CHECK(std::isnan(safe.auc_acceptability));
  CHECK(std::isnan(safe.unsafe_rate));
  CHECK(safe.pairwise_acc_d0 == 0.0);  // one pair, ordered wrongly
  CHECK(safe.pairwise_acc_by_modality_n[0] == 0);  // unknown modality: not in the breakdown
  CHECK(metrics_to_json(safe)["auc_acceptability"].is_null());
}

TEST_CASE("predictions reader: fields, null predictions, and errors that name the line") {
  std::istringstream good(
      "{\"image_id\": \"A\", \"gold_rating\": 4, \"prediction\": 3.5, \"modality\": \"T\", \"scenario_id\": 7}\n"
      "\n"
      "{\"image_id\": 12, \"gold_rating\": 2.5, \"prediction\": null}\n"
      "{\"image_id\": \"A\", \"gold_rating\": 1.5, \"prediction\": 2, \"modality\": null}\n");
  PredictionSet set = read_predictions(good, "good.jsonl");
  REQUIRE(set.records.size() == 2);
  CHECK(set.n_null_predictions == 1);
  CHECK(set.records[0].image_id == "A");
  CHECK(set.records[0].modality == Modality::Text);
  CHECK(set.records[0].scenario_id == "7");
  CHECK(set.records[1].gold_rating == 1.5);
  CHECK(set.records[1].modality == Modality::Unknown);

  auto error_of = [](const std::string& text) {
    std::istringstream in(text);
    try {
      read_predictions(in, "bad.jsonl");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string ok = "{\"image_id\": \"A\", \"gold_rating\": 4, \"prediction\": 3}\n";
  CHECK(error_of(ok + "{\"image_id\": \"A\", \"gold_rating\": 4, \"prediction\": 3\n").find("bad.jsonl:2: not valid JSON") == 0);
  CHECK(error_of(ok + ok + "{\"gold_rating\": 4, \"prediction\": 3}\n") ==
        "bad.jsonl:3: missing required field \"image_id\"");
  CHECK(error_of("{\"image_id\": \"A\", \"gold_rating\": \"high\", \"prediction\": 3}\n") ==
        "bad.jsonl:1: gold_rating must be a number, got \"high\"");
  CHECK(error_of("{\"image_id\": \"A\", \"gold_rating\": 4}\n") == "bad.jsonl:1: missing required field \"prediction\"");
  CHECK(error_of("[1, 2]\n") == "bad.jsonl:1: expected a JSON object, got array");
  CHECK(error_of("{\"image_id\": [1], \"gold_rating\": 4, \"prediction\": 3}\n") ==
        "bad.jsonl:1: image_id must be a string or an integer, got [1]");
  CHECK(error_of(ok + "{\"image_id\": \"A\", \"gold_rating\": 4, \"prediction\": 3, \"modality\": \"audio\"}\n")
            .find("bad.jsonl:2: modality 'audio'") == 0);
  // The same scenario twice (scored or not) would count twice.
  const std::string s7 = "{\"image_id\": \"A\", \"gold_rating\": 4, \"prediction\": 3, \"scenario_id\": 7}\n";
  CHECK(error_of(s7 + ok + s7) == "bad.jsonl:3: scenario_id '7' repeats line 1");
  CHECK(error_of("{\"image_id\": \"A\", \"gold_rating\": 4, \"prediction\": null, \"scenario_id\": \"s\"}\n" +
                 std::string("{\"image_id\": \"A\", \"gold_rating\": 4, \"prediction\": 2, \"scenario_id\": \"s\"}\n")) ==
        "bad.jsonl:2: scenario_id 's' repeats line 1");
  CHECK_THROWS_WITH_AS(read_predictions(std::string("/nonexistent/p.jsonl")),
                       doctest::Contains("cannot open predictions file '/nonexistent/p.jsonl'"), Error);
}

TEST_CASE("predictions fixtures: the sample file end to end, the malformed file by line") {
  const std::string dir = std::string(MMS_SOURCE_DIR) + "/tests/fixtures/losses/";
  PredictionSet set = read_predictions(dir + "sample_predictions.jsonl");
  CHECK(set.records.size() == 33);
  CHECK(set.n_null_predictions == 1);
  Metrics m = compute_metrics(set.records);
  CHECK(m.n_image_groups == 8);  // img_999 has one item
  // scipy.stats.kendalltau per image (mean over 8) and sklearn roc_auc_score on the same
  // file, computed once by tools/make_metrics_reference.py (its last line).
  CHECK(m.kendall_tau == doctest::Approx(0.6563419645684874).epsilon(kTol));
  CHECK(m.kendall_tau_n == 8);
  CHECK(m.auc_acceptability == doctest::Approx(0.8602941176470588).epsilon(kTol));
  CHECK(m.mae == doctest::Approx(0.6635242424242425).epsilon(kTol));
  CHECK_THROWS_WITH_AS(read_predictions(dir + "malformed_predictions.jsonl"),
                       doctest::Contains("malformed_predictions.jsonl:3: not valid JSON"), Error);
}
