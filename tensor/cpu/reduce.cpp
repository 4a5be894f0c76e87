// Reductions over the last dim of a contiguous [M, R] tensor: sum, max, min, argmax,
// logsumexp. One row per output element; rows run in parallel when there are enough.
//
// Sums accumulate in double for float32 (a 4096-wide row of float32 loses ~3 digits
// otherwise). Max/min propagate NaN; argmax returns the first maximum (the first NaN
// if any). logsumexp subtracts the row max first, and a row that is all -inf (an
// empty or fully masked row) gives -inf rather than NaN.
#include <cmath>
#include <limits>
#include <type_traits>

#include "tensor/cpu/cpu_backend.h"

namespace mms::cpu {

namespace {

template <typename T>
using Accumulator = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;

template <typename T>
inline bool is_nan(T v) {
  if constexpr (std::is_floating_point_v<T>) {
    return v != v;
  } else {
    return false;
  }
}

template <typename T>
T row_sum(const T* row, int64_t n) {
  Accumulator<T> total = 0;
#pragma omp simd reduction(+ : total)
  for (int64_t j = 0; j < n; ++j) total += row[j];
  return static_cast<T>(total);
}

template <typename T>
T row_max(const T* row, int64_t n) {
  T best = row[0];
  for (int64_t j = 1; j < n; ++j) {
    if (is_nan(row[j])) return row[j];
    if (row[j] > best) best = row[j];
  }
  return best;
}

template <typename T>
T row_min(const T* row, int64_t n) {
  T best = row[0];
  for (int64_t j = 1; j < n; ++j) {
    if (is_nan(row[j])) return row[j];
    if (row[j] < best) best = row[j];
  }
  return best;
}

// First index of the maximum: a later element must be strictly greater to win.
template <typename T>
int64_t row_argmax(const T* row, int64_t n) {
  int64_t best = 0;
  if (is_nan(row[0])) return 0;
  for (int64_t j = 1; j < n; ++j) {
    if (is_nan(row[j])) return j;
    if (row[j] > row[best]) best = j;
  }
  return best;
}

// max + log(sum exp(x - max)), in double; -inf for an all -inf (or empty) row, +inf
// when some x is +inf, NaN when some x is NaN.
template <typename T>
T row_logsumexp(const T* row, int64_t n) {
  if (n == 0) return -std::numeric_limits<T>::infinity();
  const T top = row_max(row, n);
  if (std::isnan(top)) return top;
  if (std::isinf(top)) return top;  // -inf: nothing to add; +inf: the sum is +inf
  double total = 0.0;
#pragma omp simd reduction(+ : total)
  for (int64_t j = 0; j < n; ++j) total += std::exp(static_cast<double>(row[j]) - top);
  return static_cast<T>(static_cast<double>(top) + std::log(total));
}

template <typename T, typename Out, typename RowFn>
void for_rows(const T* x, Out* out, int64_t rows, int64_t width, RowFn fn) {
  parallel_rows(rows, rows * width, [&](int64_t begin, int64_t end) {
    for (int64_t m = begin; m < end; ++m) out[m] = fn(x + m * width, width);
  });
}

}  // namespace

void CpuBackend::reduce_last(ReduceOp op, const Tensor& x, Tensor& out) {
  const char* name = reduce_op_name(op);
  check_contiguous(name, "input", x);
  const int64_t rows = out.numel();
  MMS_CHECK(x.dim() >= 1, name, ": input must have at least one dim, got a scalar");
  const int64_t width = x.shape().back();
  MMS_CHECK(rows * width == x.numel(), name, ": output ", shape_str(out.shape()),
            " does not match input ", shape_str(x.shape()), " reduced over its last dim");
  if (op == ReduceOp::ArgMax) {
    MMS_CHECK(out.dtype() == DType::Int64, name, ": output must be int64, got ",
              dtype_name(out.dtype()));
  } else {
    MMS_CHECK(out.dtype() == x.dtype(), name, ": output dtype ", dtype_name(out.dtype()),
              " differs from input dtype ", dtype_name(x.dtype()));
  }
  if (rows == 0) return;
  MMS_CHECK(width > 0 || op == ReduceOp::Sum || op == ReduceOp::LogSumExp, name,
            ": cannot reduce an empty dim of ", shape_str(x.shape()), " (no identity)");

  dispatch_numeric(x.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* in = static_cast<const T*>(x.raw_data());
    switch (op) {
      case ReduceOp::Sum:
        return for_rows(in, out.data<T>(), rows, width, row_sum<T>);
      case ReduceOp::Max:
        return for_rows(in, out.data<T>(), rows, width, row_max<T>);
      case ReduceOp::Min:
        return for_rows(in, out.data<T>(), rows, width, row_min<T>);
      case ReduceOp::ArgMax:
        return for_rows(in, out.data<int64_t>(), rows, width, row_argmax<T>);
      case ReduceOp::LogSumExp:
        if constexpr (std::is_floating_point_v<T>) {
          return for_rows(in, out.data<T>(), rows, width, row_logsumexp<T>);
        } else {
          unsupported_dtype(name, x.dtype());
        }
    }
  });
}

}  // namespace mms::cpu
