// N-d strided iteration for elementwise kernels.
//
// Several operands share one shape but each has its own strides (a broadcast input has
// stride 0 along the broadcast dims, a transposed one has permuted strides). We:
//   1. drop size-1 dims and coalesce neighbouring dims that are contiguous with each
//      other in *every* operand, so a contiguous tensor becomes one flat dim and the
//      common case runs as a single tight inner loop;
//   2. split the flat index range evenly over the pool's threads (parallel.h) when it
//      is large enough;
//   3. hand the body runs along the innermost dim: body(offsets, inner_strides, count),
//      where offsets[k] is operand k's element offset of the run's first element.
// The body checks `inner_strides == 1` itself to take a vectorisable path.
#pragma once

#include "tensor/cpu/parallel.h"

#include <algorithm>
#include <array>
#include <vector>

#include "tensor/cpu/cpu_backend.h"

namespace mms::cpu {

template <size_t N>
struct StridedPlan {
  std::vector<int64_t> sizes;                   // coalesced, innermost last
  std::array<std::vector<int64_t>, N> strides;  // per operand, matching `sizes`
  int64_t numel = 0;
};

template <size_t N>
StridedPlan<N> plan_strided(const Shape& shape, const std::array<const Shape*, N>& strides) {
  StridedPlan<N> plan;
  plan.numel = shape_numel(shape);
  if (plan.numel == 0) return plan;
  // Walk from the innermost dim outwards; merge dim d into the current innermost
  // group when, for every operand, stepping d equals stepping the whole group.
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    if (shape[d] == 1) continue;
    bool merge = !plan.sizes.empty();
    for (size_t k = 0; k < N && merge; ++k) {
      merge = (*strides[k])[d] == plan.strides[k].back() * plan.sizes.back();
    }
    if (merge) {
      plan.sizes.back() *= shape[d];  // the group keeps its innermost stride
    } else {
      plan.sizes.push_back(shape[d]);
      for (size_t k = 0; k < N; ++k) plan.strides[k].push_back((*strides[k])[d]);
    }
  }
  if (plan.sizes.empty()) {  // a scalar or all-size-1 shape: one element
    plan.sizes.push_back(1);
    for (size_t k = 0; k < N; ++k) plan.strides[k].push_back(0);
  }
  std::reverse(plan.sizes.begin(), plan.sizes.end());
  for (size_t k = 0; k < N; ++k) std::reverse(plan.strides[k].begin(), plan.strides[k].end());
  return plan;
}

// Runs body over flat elements [begin, end) of the plan, one innermost run at a time.
template <size_t N, typename Body>
void strided_range(const StridedPlan<N>& plan, int64_t begin, int64_t end, Body& body) {
  const int ndim = static_cast<int>(plan.sizes.size());
  const int inner = ndim - 1;
  // Multi-index and operand offsets of `begin` (ndim is small: at most the tensor rank).
  std::array<int64_t, 16> index{};
  std::vector<int64_t> index_heap;
  int64_t* idx = index.data();
  if (ndim > 16) {
    index_heap.assign(ndim, 0);
    idx = index_heap.data();
  }
  std::array<int64_t, N> offsets{};
  int64_t rest = begin;
  for (int d = inner; d >= 0; --d) {
    idx[d] = rest % plan.sizes[d];
    rest /= plan.sizes[d];
    for (size_t k = 0; k < N; ++k) offsets[k] += idx[d] * plan.strides[k][d];
  }
  std::array<int64_t, N> inner_strides;
  for (size_t k = 0; k < N; ++k) inner_strides[k] = plan.strides[k][inner];

  int64_t position = begin;
  while (position < end) {
    const int64_t count = std::min(plan.sizes[inner] - idx[inner], end - position);
    body(offsets, inner_strides, count);
    position += count;
    // advance the multi-index by `count` along the innermost dim, carrying outwards
    idx[inner] += count;
    for (size_t k = 0; k < N; ++k) offsets[k] += count * inner_strides[k];
    for (int d = inner; d > 0 && idx[d] == plan.sizes[d]; --d) {
      for (size_t k = 0; k < N; ++k) offsets[k] -= plan.sizes[d] * plan.strides[k][d];
      idx[d] = 0;
      ++idx[d - 1];
      for (size_t k = 0; k < N; ++k) offsets[k] += plan.strides[k][d - 1];
    }
  }
}

// Iterates `shape` for N operands (strides[k] of operand k), in parallel when large.
template <size_t N, typename Body>
void strided_for(const Shape& shape, const std::array<const Shape*, N>& strides, Body&& body) {
  const StridedPlan<N> plan = plan_strided<N>(shape, strides);
  const int64_t n = plan.numel;
  if (n == 0) return;
  if (parallel_worth_it(2, n)) {
    parallel_ranges(n, parallel_threads(), [&](int64_t begin, int64_t end) { strided_range(plan, begin, end, body); });
  } else {
    strided_range(plan, 0, n, body);
  }
}

}  // namespace mms::cpu
