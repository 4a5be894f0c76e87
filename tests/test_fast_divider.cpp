// cuda/fast_divider.h, checked on the host against the hardware's own division: every
// divisor from 1 to 4096, the sizes a ViT-B/32 step divides by, powers of two and their
// neighbours, each with dividends at the ends of the valid range and a random spread.
#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "cuda/fast_divider.h"

using mms::cuda::FastDivider;

namespace {

constexpr uint32_t kMaxDividend = (uint32_t(1) << 31) - 1;

// How many (n, d) pairs disagree with n / d; 0 is the only right answer.
int64_t mismatches(uint32_t d, std::mt19937& rng) {
  const FastDivider divider(d);
  std::vector<uint32_t> dividends = {0, 1, d - 1, d, d + 1, 2 * d - 1, 2 * d, kMaxDividend, kMaxDividend - 1,
                                     kMaxDividend - d, (kMaxDividend / d) * d, (kMaxDividend / d) * d - 1};
  std::uniform_int_distribution<uint32_t> any(0, kMaxDividend);
  for (int i = 0; i < 64; ++i) dividends.push_back(any(rng));
  int64_t wrong = 0;
  for (uint32_t n : dividends) {
    if (n > kMaxDividend) continue;  // 2 * d and its neighbours leave the range for large d
    if (divider.divide(n) != n / d) ++wrong;
  }
  return wrong;
}

}  // namespace

TEST_CASE("fast divider: multiply-high and shift equal n / d over the 31-bit range") {
  std::mt19937 rng(7);
  int64_t wrong = 0;
  for (uint32_t d = 1; d <= 4096; ++d) wrong += mismatches(d, rng);
  for (uint32_t d : {49408u, 9856u, 1536u, 3072u, 77u, 50u, 12u, 64u, 224u, 65537u, 1000003u})
    wrong += mismatches(d, rng);
  for (int bit = 1; bit < 31; ++bit) {
    const uint32_t p = uint32_t(1) << bit;
    for (uint32_t d : {p - 1, p, p + 1}) wrong += mismatches(d, rng);
  }
  wrong += mismatches(kMaxDividend, rng);
  CHECK(wrong == 0);
  // d = 2^31, the largest size OffsetCalculator passes (a tensor of exactly 2^31
  // elements): s = 31, m = 1, so every 31-bit n gives 0.
  const FastDivider top(uint32_t(1) << 31);
  CHECK(top.shift == 31);
  CHECK(top.magic == 1);
  CHECK(top.divide(kMaxDividend) == 0);
  CHECK(top.divide(0) == 0);
}

TEST_CASE("fast divider: the constants of small divisors") {
  // d = 1 is the identity; a power of two is a plain shift (magic 1, so the high word is 0).
  CHECK(FastDivider(1).divide(kMaxDividend) == kMaxDividend);
  const FastDivider eight(8);
  CHECK(eight.shift == 3);
  CHECK(eight.magic == 1);
  CHECK(eight.divide(8 * 1000 + 7) == 1000);
  // d = 7: s = 3, m = floor(2^32 * 1 / 7) + 1 = 613566757.
  const FastDivider seven(7);
  CHECK(seven.shift == 3);
  CHECK(seven.magic == 613566757u);
  CHECK(seven.divide(700) == 100);
}
