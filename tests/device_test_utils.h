// What the CUDA-vs-CPU test suites share: the visible skip on machines without a GPU,
// and the relative error DESIGN.md's tolerances are stated in.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "tensor/backend.h"
#include "tensor/tensor.h"

// Returns from the test case with a message (gpu_check.sh greps for it) when no GPU.
#define SKIP_WITHOUT_GPU()                   \
  do {                                       \
    if (!::mms::cuda_available()) {          \
      MESSAGE("CUDA tests skipped: no GPU"); \
      return;                                \
    }                                        \
  } while (0)

namespace mms::testing {

// max |got - ref| / max |ref| over all elements (either tensor on any device); any NaN or
// infinity fails (infinite error), and an all-zero reference fails the test: never
// validate on zeros.
inline double relative_error(const Tensor& got, const Tensor& ref) {
  REQUIRE(got.shape() == ref.shape());
  const std::vector<double> g = got.to(Device::cpu()).to_vector<double>();
  const std::vector<double> r = ref.to(Device::cpu()).to_vector<double>();
  double max_ref = 0.0, max_diff = 0.0;
  for (size_t i = 0; i < r.size(); ++i) {
    if (!std::isfinite(g[i]) || !std::isfinite(r[i])) return std::numeric_limits<double>::infinity();
    max_ref = std::max(max_ref, std::abs(r[i]));
    max_diff = std::max(max_diff, std::abs(g[i] - r[i]));
  }
  REQUIRE(max_ref > 0.0);
  return max_diff / max_ref;
}

}  // namespace mms::testing

// CHECK that relative_error(got, ref) <= tolerance, reporting the error and `what`.
#define CHECK_WITHIN(got, ref, tolerance, what)                              \
  do {                                                                       \
    const double error_ = ::mms::testing::relative_error((got), (ref));      \
    INFO(what << ": relative error " << error_);                             \
    CHECK(error_ <= (tolerance));                                            \
  } while (0)
