// Reductions over the last dim of a contiguous [M, R] tensor: sum, max, min, argmax,
// logsumexp. One row per output element; rows run in parallel when there are enough.
// And the column sums of a contiguous [M, N] tensor (sum_rows: every bias gradient).
//
// Sums accumulate in double for float32 (a 4096-wide row of float32 loses ~3 digits
// otherwise). Max/min propagate NaN; argmax returns the first maximum (the first NaN
// if any). logsumexp subtracts the row max first, and a row that is all -inf (an
// empty or fully masked row) gives -inf rather than NaN.
#include <algorithm>
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

// Column sums, out[j] = sum over m of x[m, j], each accumulated in double row after row.
// The columns are cut into blocks of kColumnBlock (two cache lines of float32), a block's
// accumulators stay in registers or L1 while its rows stream past, and blocks run in
// parallel: every column's sum is the same whatever the thread count. (Through the
// ones-row GEMV this was a one-row product: the whole [M, N] operand packed for a tile
// that used one row in eight, on one thread.)
template <typename T>
void column_sums(const T* x, T* out, int64_t rows, int64_t cols) {
  constexpr int64_t kColumnBlock = 32;
  const int64_t blocks = (cols + kColumnBlock - 1) / kColumnBlock;
  parallel_rows(blocks, rows * cols, [&](int64_t first, int64_t last) {
    for (int64_t block = first; block < last; ++block) {
      const int64_t begin = block * kColumnBlock, width = std::min(kColumnBlock, cols - begin);
      double total[kColumnBlock] = {};
      for (int64_t m = 0; m < rows; ++m) {
        const T* row = x + m * cols + begin;
#pragma omp simd
        for (int64_t j = 0; j < width; ++j) total[j] += static_cast<double>(row[j]);
      }
      for (int64_t j = 0; j < width; ++j) out[begin + j] = static_cast<T>(total[j]);
    }
  });
}

}  // namespace

bool CpuBackend::sum_rows(const Tensor& x, Tensor& out) {
  const char* name = "sum";
  if (x.dtype() != DType::Float32 && x.dtype() != DType::Float64) return false;
  check_contiguous(name, "input", x);
  check_contiguous(name, "output", out);
  MMS_CHECK(x.dim() == 2 && out.numel() == x.size(1) && out.dtype() == x.dtype(), name, ": column sums of ",
            shape_str(x.shape()), " cannot go to ", dtype_name(out.dtype()), " ", shape_str(out.shape()));
  dispatch_floating(x.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    column_sums(x.data<T>(), out.data<T>(), x.size(0), x.size(1));
  });
  return true;
}

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
