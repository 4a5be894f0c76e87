// MSE, cross-entropy, BCE-with-logits, pairwise logistic and the combined objective:
// hand values (computed with 40-digit mpmath from the formulas in each header), float64
// gradchecks, masks, empty cases and non-finite input.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "autograd/gradcheck.h"
#include "losses/bce.h"
#include "losses/cross_entropy.h"
#include "losses/listmle.h"
#include "losses/mse.h"
#include "losses/objective.h"
#include "losses/pairwise.h"

using namespace mms;
using namespace mms::losses;

namespace {
const double kInf = std::numeric_limits<double>::infinity();

Tensor param(const std::vector<double>& values, Shape shape, DType dtype = DType::Float64) {
  Tensor t = from_vector<double>(values, shape, dtype);
  t.set_requires_grad(true);
  return t;
}
Tensor values_of(const std::vector<double>& values, Shape shape) { return from_vector<double>(values, shape); }
Tensor mask_of(const std::vector<uint8_t>& values, Shape shape) { return from_vector<uint8_t>(values, shape); }
Tensor ids_of(const std::vector<int64_t>& values, Shape shape) { return from_vector<int64_t>(values, shape); }

void check_abs(const Tensor& got_tensor, const std::vector<double>& want, double tol) {
  std::vector<double> got = got_tensor.to_vector<double>();
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element ", i, ": got ", got[i], " want ", want[i]);
    CHECK(std::abs(got[i] - want[i]) <= tol);
  }
}

void check_gradcheck(const TensorFunction& f, const std::vector<Tensor>& inputs) {
  GradcheckResult r = gradcheck(f, inputs);
  INFO(r.message);
  CHECK(r.ok);
}
}  // namespace

// ---- MSE ------------------------------------------------------------------------------

TEST_CASE("mse: masked mean of squared errors and its gradient") {
  Tensor p = param({1.5, 3.0, 4.5}, {3});
  Tensor loss = mse_loss(p, values_of({2.0, 3.0, 2.5}, {3}), mask_of({1, 1, 0}, {3}));
  CHECK(loss.item() == doctest::Approx(0.125).epsilon(1e-15));  // (0.25 + 0) / 2
  loss.backward();
  check_abs(p.grad(), {-0.5, 0.0, 0.0}, 1e-15);  // 2 (p - t) / n
}

TEST_CASE("mse: float32 matches, float64 gradcheck, empty mask, non-finite input") {
  Tensor p32 = param({1.5, 3.0, 4.5}, {3}, DType::Float32);
  CHECK(mse_loss(p32, values_of({2.0, 3.0, 2.5}, {3})).item() == doctest::Approx((0.25 + 4.0) / 3).epsilon(1e-6));

  Tensor p = randn({2, 3}, 3, 0, DType::Float64);
  p.set_requires_grad(true);
  Tensor t = randn({2, 3}, 4, 0, DType::Float64);
  Tensor v = mask_of({1, 0, 1, 1, 1, 0}, {2, 3});
  check_gradcheck([&](const std::vector<Tensor>& in) { return mse_loss(in[0], t, v); }, {p});

  Tensor none = mse_loss(p, t, mask_of({0, 0, 0, 0, 0, 0}, {2, 3}));
  CHECK(none.item() == 0.0);
  p.zero_grad();
  none.backward();
  check_abs(p.grad(), {0, 0, 0, 0, 0, 0}, 0.0);

  Tensor bad = param({1.0, std::nan(""), kInf}, {3});
  CHECK_THROWS_WITH_AS(mse_loss(bad, values_of({1, 2, 3}, {3})), doctest::Contains("mse_loss: pred"), Error);
  // Masked NaN/inf (in pred and in target) never reach the arithmetic.
  Tensor ok = mse_loss(bad, values_of({2.0, std::nan(""), 3.0}, {3}), mask_of({1, 0, 0}, {3}));
  CHECK(ok.item() == 1.0);
  CHECK_THROWS_WITH_AS(mse_loss(p, values_of({1, 2}, {2})), doctest::Contains("mse_loss: target [2] does not match"), Error);
}

// ---- cross-entropy ---------------------------------------------------------------------

TEST_CASE("cross_entropy: mean over non-ignored rows, hand values") {
  Tensor z = param({1, 2, 3, 0, 0, 0, 5, 5, 5}, {3, 3});
  Tensor loss = cross_entropy_loss(z, ids_of({2, kIgnoreIndex, 0}, {3}));
  // (log(1 + e^-1 + e^-2) + log 3) / 2
  CHECK(std::abs(loss.item() - 0.753109126556245) < 1e-14);
  loss.backward();
  check_abs(z.grad(),
            {0.045015286585190229, 0.12236423552739883, -0.16737952211258906, 0, 0, 0,
             -0.33333333333333333, 0.16666666666666667, 0.16666666666666667},
            1e-14);
}

TEST_CASE("cross_entropy: [B, K, 3] logits, gradcheck, all ignored, bad targets, NaN logits") {
  Tensor z = randn({2, 2, 3}, 8, 0, DType::Float64);
  z.set_requires_grad(true);
  Tensor t = ids_of({0, 2, kIgnoreIndex, 1}, {2, 2});
  check_gradcheck([&](const std::vector<Tensor>& in) { return cross_entropy_loss(in[0], t); }, {z});

  Tensor none = cross_entropy_loss(z, ids_of({-100, -100, -100, -100}, {2, 2}));
  CHECK(none.item() == 0.0);
  z.zero_grad();
  none.backward();
  check_abs(z.grad(), std::vector<double>(12, 0.0), 0.0);

  CHECK_THROWS_WITH_AS(cross_entropy_loss(z, ids_of({0, 3, 1, 1}, {2, 2})),
                       doctest::Contains("target 3 at row 1 is outside [0, 3)"), Error);
  Tensor bad = param({0, std::nan(""), 1, kInf, 0, 0}, {2, 3});
  CHECK_THROWS_WITH_AS(cross_entropy_loss(bad, ids_of({0, 1}, {2})),
                       doctest::Contains("cross_entropy_loss: logits [2, 3] has a non-finite value (nan) at [0, 1]"),
                       Error);
  // A NaN row that is ignored is fine.
  CHECK(std::isfinite(cross_entropy_loss(param({0, std::nan(""), 1, 0, 0, 0}, {2, 3}), ids_of({-100, 2}, {2})).item()));
}

// ---- BCE with logits -------------------------------------------------------------------

TEST_CASE("bce_with_logits: hand values, stable at +/-1000, labels from ratings") {
  Tensor x = param({0, 2, -3}, {3});
  Tensor loss = bce_with_logits_loss(x, values_of({1, 0, 1}, {3}));
  CHECK(std::abs(loss.item() - 1.9562208477255533) < 1e-14);
  loss.backward();
  check_abs(x.grad(), {-0.16666666666666667, 0.29359902599262748, -0.31752470894081107}, 1e-14);

  // Saturated logits: exact 0 / 1000 per item, no overflow to inf or NaN.
  Tensor big = param({1000, -1000}, {2});
  CHECK(bce_with_logits_loss(big, values_of({1, 1}, {2})).item() == doctest::Approx(500.0).epsilon(1e-15));
  Tensor big32 = param({1000, -1000}, {2}, DType::Float32);
  CHECK(bce_with_logits_loss(big32, values_of({1, 1}, {2})).item() == doctest::Approx(500.0).epsilon(1e-6));

  // label = mean rating >= 2.5
  check_abs(acceptability_targets(values_of({1.0, 2.49, 2.5, 4.0}, {4})), {0, 0, 1, 1}, 0.0);
}

TEST_CASE("bce_with_logits: gradcheck with mask, empty mask, non-finite") {
  Tensor x = randn({2, 3}, 21, 0, DType::Float64);
  x.set_requires_grad(true);
  Tensor t = values_of({1, 0, 1, 0, 0, 1}, {2, 3});
  Tensor v = mask_of({1, 1, 0, 1, 0, 1}, {2, 3});
  check_gradcheck([&](const std::vector<Tensor>& in) { return bce_with_logits_loss(in[0], t, v); }, {x});
  CHECK(bce_with_logits_loss(x, t, mask_of({0, 0, 0, 0, 0, 0}, {2, 3})).item() == 0.0);
  CHECK_THROWS_WITH_AS(bce_with_logits_loss(param({kInf, 0}, {2}), values_of({1, 0}, {2})),
                       doctest::Contains("bce_with_logits_loss: logits"), Error);
}

// ---- pairwise logistic -----------------------------------------------------------------

TEST_CASE("pairwise_logistic: mean softplus(s_j - s_i) over pairs with y_i > y_j") {
  Tensor s = param({0.5, 0.8, 0.4}, {1, 3});
  Tensor loss = pairwise_logistic_loss(s, values_of({0, 1, 0}, {1, 3}));
  // pairs (1,0), (1,2); the tied pair (0,2) carries no preference
  CHECK(std::abs(loss.item() - 0.53368524843423987) < 1e-14);
  loss.backward();
  std::vector<double> g = s.grad().to_vector<double>();
  check_abs(s.grad(), {0.21277874159417051, -0.41343491153794451, 0.200656169943774}, 1e-14);
  CHECK(std::abs(g[0] + g[1] + g[2]) < 1e-15);
}

TEST_CASE("pairwise_logistic: pooled over lists, lists without pairs add nothing") {
  // List 0 as above (2 pairs); list 1 all-equal labels (0 pairs); list 2 one valid item.
  Tensor s = param({0.5, 0.8, 0.4, 9, -9, 3, 1, std::nan(""), 2}, {3, 3});
  Tensor y = values_of({0, 1, 0, 2, 2, 2, 5, 1, 4}, {3, 3});
  Tensor v = mask_of({1, 1, 1, 1, 1, 1, 1, 0, 0}, {3, 3});
  CHECK(std::abs(pairwise_logistic_loss(s, y, v).item() - 0.53368524843423987) < 1e-14);
  // No pair anywhere: 0 with zero gradient, no division by zero.
  Tensor none = pairwise_logistic_loss(s, values_of({1, 1, 1, 2, 2, 2, 3, 3, 3}, {3, 3}), v);
  CHECK(none.item() == 0.0);
  none.backward();
  check_abs(s.grad(), std::vector<double>(9, 0.0), 0.0);
}

TEST_CASE("pairwise_logistic: gradcheck, extreme gaps, NaN scores") {
  Tensor s = randn({2, 4}, 31, 0, DType::Float64);
  s.set_requires_grad(true);
  Tensor y = values_of({1, 3, 3, 2, 4, 1, 2, 5}, {2, 4});
  Tensor v = mask_of({1, 1, 1, 1, 1, 1, 0, 1}, {2, 4});
  check_gradcheck([&](const std::vector<Tensor>& in) { return pairwise_logistic_loss(in[0], y, v); }, {s});
  // Gap of 1000 either way: softplus(-1000) = 0 (well, e^-1000), softplus(1000) = 1000.
  CHECK(pairwise_logistic_loss(param({1000, 0}, {1, 2}), values_of({2, 1}, {1, 2})).item() == 0.0);
  CHECK(pairwise_logistic_loss(param({0, 1000}, {1, 2}), values_of({2, 1}, {1, 2})).item() == 1000.0);
  CHECK_THROWS_WITH_AS(pairwise_logistic_loss(param({std::nan(""), 0}, {1, 2}), values_of({2, 1}, {1, 2})),
                       doctest::Contains("pairwise_logistic_loss: scores"), Error);
}

// ---- the combined objective ------------------------------------------------------------

TEST_CASE("objective: weighted sum of the terms, each reported; presets") {
  Tensor s = param({0.5, 0.8, 0.4}, {1, 3});
  Tensor y = values_of({2, 3, 1}, {1, 3});
  Tensor logits = param({1, 2, 3, 0, 0, 0, 5, 5, 5}, {1, 3, 3});
  ObjectiveInputs in{.scores = s, .gold = y, .modality_logits = logits,
                     .modality_targets = ids_of({2, kIgnoreIndex, 0}, {1, 3}), .tie_seed = 0};
  ObjectiveResult r = compute_objective(ObjectiveWeights::combined(1.0, 0.5, 0.1), in);
  const double listmle = 1.5244956059141765;  // y = [2, 3, 1] gives the order 1, 0, 2
  const double mse = ((0.5 - 2) * (0.5 - 2) + (0.8 - 3) * (0.8 - 3) + (0.4 - 1) * (0.4 - 1)) / 3;
  const double ce = 0.753109126556245;
  REQUIRE(r.listmle);
  REQUIRE(r.mse);
  REQUIRE(r.modality);
  CHECK(!r.bce);
  CHECK(!r.pairwise);
  CHECK(std::abs(*r.listmle - listmle) < 1e-12);
  CHECK(std::abs(*r.mse - mse) < 1e-12);
  CHECK(std::abs(*r.modality - ce) < 1e-12);
  CHECK(std::abs(r.total_value - (listmle + 0.5 * mse + 0.1 * ce)) < 1e-12);
  nlohmann::json j = r.to_json();
  CHECK(j.contains("loss"));
  CHECK(j.contains("listmle"));
  CHECK(!j.contains("bce"));
  r.total.backward();
  // d total / d s = listmle grad + 0.5 * 2 (s - y) / 3
  check_abs(s.grad(),
            {-0.16777247636889715 + (0.5 - 2) / 3, -0.58525812733193048 + (0.8 - 3) / 3,
             0.75303060370082763 + (0.4 - 1) / 3},
            1e-12);
  check_abs(logits.grad(),
            {0.1 * 0.045015286585190229, 0.1 * 0.12236423552739883, 0.1 * -0.16737952211258906, 0, 0, 0,
             0.1 * -0.33333333333333333, 0.1 * 0.16666666666666667, 0.1 * 0.16666666666666667},
            1e-12);

  ObjectiveResult pw = compute_objective(ObjectiveWeights::preset("pairwise"), in);
  CHECK(pw.pairwise);
  CHECK(!pw.listmle);
  ObjectiveResult bce = compute_objective(ObjectiveWeights::preset("bce"), in);
  // labels [0, 1, 0] (2 < 2.5, 3 >= 2.5, 1 < 2.5) on the scores as logits
  const double want_bce = (std::log1p(std::exp(0.5)) + std::log1p(std::exp(-0.8)) + std::log1p(std::exp(0.4))) / 3;
  CHECK(std::abs(bce.total_value - want_bce) < 1e-12);
  CHECK(std::abs(compute_objective(ObjectiveWeights::mse_only(), in).total_value - mse) < 1e-12);
  CHECK_THROWS_WITH_AS(ObjectiveWeights::preset("hinge"), doctest::Contains("unknown preset 'hinge'"), Error);
  CHECK_THROWS_WITH_AS(compute_objective({0, 0, 0, 0, 0}, in), doctest::Contains("every weight is 0"), Error);
}

TEST_CASE("objective: deferred host reads give the same values and the same errors, later") {
  Tensor s = param({0.5, 0.8, 0.4, 1.5, -0.2, 0.1}, {2, 3});
  Tensor y = values_of({2, 3, 1, 4, 4, 5}, {2, 3});
  Tensor v = mask_of({1, 1, 1, 1, 0, 1}, {2, 3});
  Tensor logits = param({1, 2, 3, 0, 0, 0, 5, 5, 5, 1, -1, 0, 2, 2, 0, 3, 1, 2}, {2, 3, 3});
  Tensor t = ids_of({2, kIgnoreIndex, 0, 1, kIgnoreIndex, 2}, {2, 3});
  const ObjectiveWeights every_term{1.0, 0.5, 0.1, 0.3, 0.7};
  ObjectiveInputs in{.scores = s, .gold = y, .valid = v, .modality_logits = logits, .modality_targets = t,
                     .tie_seed = 5};
  ObjectiveResult now = compute_objective(every_term, in);
  ObjectiveResult later = compute_objective(every_term, in, HostReads::Deferred);
  CHECK(now.values_read());
  CHECK(!later.values_read());
  CHECK(!later.listmle);  // nothing read yet
  later.read_values();
  CHECK(later.values_read());
  REQUIRE(later.listmle);
  REQUIRE(later.pairwise);
  CHECK(*later.listmle == *now.listmle);
  CHECK(*later.mse == *now.mse);
  CHECK(*later.modality == *now.modality);
  CHECK(*later.bce == *now.bce);
  CHECK(*later.pairwise == *now.pairwise);
  CHECK(later.total_value == now.total_value);
  CHECK(now.total_value > 0.5);  // a real loss, not zeros
  later.read_values();  // idempotent
  CHECK(later.total_value == now.total_value);

  // A NaN score at a valid position: the immediate mode throws from compute_objective;
  // the deferred mode builds the graph and throws the same message from read_values.
  Tensor bad = param({0.5, 0.8, 0.4, 1.5, -0.2, std::nan("")}, {2, 3});
  in.scores = bad;
  std::string immediate;
  try {
    compute_objective(every_term, in);
  } catch (const Error& e) {
    immediate = e.what();
  }
  CHECK(immediate.find("listmle_loss: scores [2, 3] has a non-finite value (nan) at [1, 2]") != std::string::npos);
  ObjectiveResult deferred = compute_objective(every_term, in, HostReads::Deferred);
  std::string from_read;
  try {
    deferred.read_values();
  } catch (const Error& e) {
    from_read = e.what();
  }
  CHECK(from_read == immediate);
  // NaN at the masked position [1, 1] takes no part: no error either way.
  in.scores = param({0.5, 0.8, 0.4, 1.5, std::nan(""), 0.1}, {2, 3});
  in.bce_logits = s;
  ObjectiveWeights ranking_only{1.0, 0.5, 0.0, 0.0, 0.7};
  ObjectiveResult masked = compute_objective(ranking_only, in, HostReads::Deferred);
  masked.read_values();
  CHECK(std::isfinite(masked.total_value));
}

TEST_CASE("objective: float64 gradcheck of the combined objective through scores and logits") {
  Tensor s = randn({2, 3}, 41, 0, DType::Float64);
  Tensor logits = randn({2, 3, 3}, 42, 0, DType::Float64);
  s.set_requires_grad(true);
  logits.set_requires_grad(true);
  Tensor y = values_of({1, 4, 2.5, 3, 3, 5}, {2, 3});
  Tensor v = mask_of({1, 1, 1, 1, 1, 0}, {2, 3});
  Tensor t = ids_of({0, 1, 2, kIgnoreIndex, 1, kIgnoreIndex}, {2, 3});
  ObjectiveWeights w{1.0, 0.5, 0.1, 0.3, 0.7};  // every term at once
  check_gradcheck(
      [&](const std::vector<Tensor>& in) {
        return compute_objective(w, {.scores = in[0], .gold = y, .valid = v, .modality_logits = in[1],
                                     .modality_targets = t, .tie_seed = 3})
            .total;
      },
      {s, logits});
}
