// ListMLE: the test vectors (values from a 50-digit mpmath evaluation of the
// definition), batching with masks, the seeded tie rule, extreme scores, non-finite
// input, and a float64 gradcheck.
#include <doctest/doctest.h>

#include <cmath>
#include <algorithm>
#include <limits>
#include <set>

#include "autograd/gradcheck.h"
#include "losses/listmle.h"

using namespace mms;
using mms::losses::listmle_loss;
using mms::losses::listmle_order;

namespace {
Tensor scores_of(const std::vector<double>& values, Shape shape, DType dtype = DType::Float64) {
  Tensor s = from_vector<double>(values, shape, dtype);
  s.set_requires_grad(true);
  return s;
}
Tensor gold_of(const std::vector<double>& values, Shape shape) { return from_vector<double>(values, shape); }
Tensor mask_of(const std::vector<uint8_t>& values, Shape shape) { return from_vector<uint8_t>(values, shape); }

void check_abs(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element ", i, ": got ", got[i], " want ", want[i]);
    CHECK(std::abs(got[i] - want[i]) <= tol);
  }
}
}  // namespace

TEST_CASE("listmle: issue vector y=[1,0], s=[0.6,0.8]") {
  Tensor s = scores_of({0.6, 0.8}, {1, 2});
  Tensor loss = listmle_loss(s, gold_of({1, 0}, {1, 2}), Tensor(), 7);
  CHECK(std::abs(loss.item() - 0.79813886938159184) < 1e-12);
  loss.backward();
  check_abs(s.grad().to_vector<double>(), {-0.54983399731247791, 0.54983399731247791}, 1e-12);
}

TEST_CASE("listmle: issue vector y=[0,1,0], s=[0.5,0.8,0.4] (order 1,0,2), float64 and float32") {
  for (DType dtype : {DType::Float64, DType::Float32}) {
    CAPTURE(dtype_name(dtype));
    const double tol = dtype == DType::Float64 ? 1e-12 : 1e-6;
    Tensor s = scores_of({0.5, 0.8, 0.4}, {1, 3}, dtype);
    // y = [0, 1, 0] has a tie between items 0 and 2; the order (1, 0, 2) is the
    // one seed 0 draws, and the loss below is only right for that order.
    losses::ListOrder order = listmle_order({0, 1, 0}, {1, 1, 1}, 1, 3, 0);
    REQUIRE(order.order == std::vector<int64_t>{1, 0, 2});
    Tensor loss = listmle_loss(s, gold_of({0, 1, 0}, {1, 3}), Tensor(), 0);
    CHECK(loss.dtype() == dtype);
    CHECK(std::abs(loss.item() - 1.5244956059141765) < tol);
    loss.backward();
    std::vector<double> g = s.grad().to_vector<double>();
    check_abs(g, {-0.16777247636889715, -0.58525812733193048, 0.75303060370082763}, tol);
    CHECK(std::abs(g[0] + g[1] + g[2]) < tol);  // per-list gradient sums to 0
  }
}

TEST_CASE("listmle: a batch averages over lists with >= 2 valid items; padding is ignored") {
  // List 0: the 2-item vector padded to width 3 (padding holds NaN: never read).
  // List 1: the 3-item vector with distinct gold (order 1, 0, 2 without ties).
  // List 2: one valid item (no ranking). List 3: fully masked.
  const double nan = std::nan("");
  Tensor s = scores_of({0.6, 0.8, nan, 0.5, 0.8, 0.4, 1.0, 2.0, 3.0, nan, nan, nan}, {4, 3});
  Tensor y = gold_of({1, 0, 0, 2, 3, 1, 5, 0, 0, 0, 0, 0}, {4, 3});
  Tensor v = mask_of({1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0}, {4, 3});
  Tensor loss = listmle_loss(s, y, v, 99);
  CHECK(std::abs(loss.item() - (0.79813886938159184 + 1.5244956059141765) / 2) < 1e-12);
  loss.backward();
  std::vector<double> g = s.grad().to_vector<double>();
  check_abs(g, {-0.54983399731247791 / 2, 0.54983399731247791 / 2, 0, -0.16777247636889715 / 2,
                -0.58525812733193048 / 2, 0.75303060370082763 / 2, 0, 0, 0, 0, 0, 0},
            1e-12);
}

TEST_CASE("listmle: extreme scores s=[50,-40,3,3], first ranked first: exact, no NaN") {
  for (DType dtype : {DType::Float64, DType::Float32}) {
    CAPTURE(dtype_name(dtype));
    Tensor s = scores_of({50, -40, 3, 3}, {1, 4}, dtype);
    Tensor loss = listmle_loss(s, gold_of({4, 3, 2, 1}, {1, 4}), Tensor(), 1);
    // 40 + 3 + 2 log 2 + O(e^-43): the mpmath value is 44.386294361119891.
    CHECK(std::abs(loss.item() - 44.386294361119891) < (dtype == DType::Float64 ? 1e-12 : 1e-5));
    loss.backward();
    std::vector<double> g = s.grad().to_vector<double>();
    for (double x : g) CHECK(std::isfinite(x));
    check_abs(g, {-7.7479952573743742e-21, -1.0, -4.9004278311089825e-20, 1.0}, 1e-6);
    CHECK(std::abs(g[0]) < 1e-15);  // no epsilon artefact: e^-47-sized, not 1e-8-sized
  }
}

TEST_CASE("listmle: ties are broken by the seed, deterministically") {
  // Two tied items: the loss depends on which goes first, so the seed must decide it.
  const std::vector<double> y{2, 2, 2, 2, 2};
  const std::vector<uint8_t> all(5, 1);
  std::set<std::vector<int64_t>> seen;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    losses::ListOrder a = listmle_order(y, all, 1, 5, seed);
    losses::ListOrder b = listmle_order(y, all, 1, 5, seed);
    CHECK(a.order == b.order);  // same seed, same order
    std::vector<int64_t> sorted = a.order;
    std::sort(sorted.begin(), sorted.end());
    CHECK(sorted == std::vector<int64_t>{0, 1, 2, 3, 4});  // a permutation
    seen.insert(a.order);
  }
  CHECK(seen.size() > 20);  // seeds really shuffle (40 draws from 120 permutations)
  // Gold order dominates the keys: distinct gold gives the same order for every seed.
  for (uint64_t seed = 0; seed < 10; ++seed)
    CHECK(listmle_order({1, 3, 2}, {1, 1, 1}, 1, 3, seed).order == std::vector<int64_t>{1, 2, 0});
  // Invalid items go last, after the valid ones.
  losses::ListOrder padded = listmle_order({1, 9, 2}, {1, 0, 1}, 1, 3, 3);
  CHECK(padded.order == std::vector<int64_t>{2, 0, 1});
  CHECK(padded.lengths == std::vector<int64_t>{2});
}

TEST_CASE("listmle: all-equal labels give the Plackett-Luce loss of the drawn order") {
  Tensor s = scores_of({0.1, 0.7}, {1, 2});
  Tensor y = gold_of({3, 3}, {1, 2});
  // For 2 items: loss = log(e^a + e^b) - first score, where `first` is the seed's pick.
  for (uint64_t seed : {0u, 1u, 2u, 3u}) {
    losses::ListOrder order = listmle_order({3, 3}, {1, 1}, 1, 2, seed);
    const double first = order.order[0] == 0 ? 0.1 : 0.7;
    const double want = std::log(std::exp(0.1) + std::exp(0.7)) - first;
    CHECK(std::abs(listmle_loss(s, y, Tensor(), seed).item() - want) < 1e-12);
  }
}

TEST_CASE("listmle: nothing to rank -> loss 0 with a zero gradient") {
  Tensor s = scores_of({1, 2, 3, 4}, {2, 2});
  Tensor v = mask_of({1, 0, 0, 0}, {2, 2});  // one 1-item list, one fully masked list
  Tensor loss = listmle_loss(s, gold_of({1, 2, 3, 4}, {2, 2}), v, 0);
  CHECK(loss.item() == 0.0);
  loss.backward();
  check_abs(s.grad().to_vector<double>(), {0, 0, 0, 0}, 0.0);
  // width 1: every list has one item
  Tensor one = scores_of({5}, {1, 1});
  CHECK(listmle_loss(one, gold_of({3}, {1, 1}), Tensor(), 0).item() == 0.0);
}

TEST_CASE("listmle: NaN or inf scores at valid items are an error naming the loss") {
  const double inf = std::numeric_limits<double>::infinity();
  for (double bad : {std::nan(""), inf, -inf}) {
    Tensor s = scores_of({0.5, bad, 0.1}, {1, 3});
    CHECK_THROWS_WITH_AS(listmle_loss(s, gold_of({1, 2, 3}, {1, 3}), Tensor(), 0),
                         doctest::Contains("listmle_loss: scores [1, 3] has a non-finite value"), Error);
  }
  // The same value at a masked item is ignored.
  Tensor s = scores_of({0.5, inf, 0.1}, {1, 3});
  Tensor loss = listmle_loss(s, gold_of({1, 2, 3}, {1, 3}), mask_of({1, 0, 1}, {1, 3}), 0);
  CHECK(std::isfinite(loss.item()));
  // A NaN gold rating at a valid item is an error too.
  CHECK_THROWS_WITH_AS(listmle_loss(s, gold_of({std::nan(""), 2, 3}, {1, 3}), Tensor(), 0),
                       doctest::Contains("gold rating of list 0 item 0"), Error);
  // Shape mismatches name the loss.
  CHECK_THROWS_WITH_AS(listmle_loss(s, gold_of({1, 2}, {1, 2}), Tensor(), 0),
                       doctest::Contains("listmle_loss: gold [1, 2] does not match scores [1, 3]"), Error);
}

TEST_CASE("listmle: float64 gradcheck with ties, padding and a short list") {
  Tensor s = randn({3, 5}, 11, 0, DType::Float64);
  s.set_requires_grad(true);
  Tensor y = gold_of({5, 3, 3, 1, 2, 1, 1, 4, 2, 2, 3, 0, 0, 0, 0}, {3, 5});
  Tensor v = mask_of({1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0}, {3, 5});
  GradcheckResult r = gradcheck([&](const std::vector<Tensor>& in) { return listmle_loss(in[0], y, v, 5); }, {s});
  INFO(r.message);
  CHECK(r.ok);
  CHECK(r.max_abs_error < 1e-8);
}
