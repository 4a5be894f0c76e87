// Row gathers and scatters: index_select_rows / index_add_rows (embedding lookup and
// its gradient), gather_last / scatter_add_last (picking one entry per row, e.g. the
// target logit of a cross-entropy, and its gradient).
//
// Every index is checked before any thread starts (an exception must not leave a pool
// part, tensor/cpu/parallel.h): an out-of-range or negative index throws mms::Error naming the op, the bad
// index, where it sits, and the valid range. Selects copy raw bytes, so they work for
// every dtype; the scatter-adds accumulate and so are float32/float64.

#include <cstring>

#include "tensor/cpu/cpu_backend.h"

namespace mms::cpu {

namespace {

void check_index_tensor(const char* op, const Tensor& index) {
  MMS_CHECK(index.dtype() == DType::Int64, op, ": index must be int64, got ",
            dtype_name(index.dtype()));
}

// index[i * stride] in [0, limit) for every i < count.
void check_bounds(const char* op, const int64_t* index, int64_t count, int64_t stride,
                  int64_t limit, const char* what) {
  for (int64_t i = 0; i < count; ++i) {
    const int64_t v = index[i * stride];
    MMS_CHECK(v >= 0 && v < limit, op, ": index ", v, " at position ", i,
              " is out of range for ", limit, " ", what, " (valid: 0..", limit - 1, ")");
  }
}

struct RowTable {
  int64_t rows, width;
};

RowTable row_table(const char* op, const Tensor& table) {
  check_contiguous(op, "table", table);
  MMS_CHECK(table.dim() >= 1, op, ": table must have at least one dim");
  const int64_t rows = table.size(0);
  return {rows, rows == 0 ? 0 : table.numel() / rows};
}

// For the 1-D row index: its count and its element stride (any stride is fine).
int64_t row_index_stride(const char* op, const Tensor& index) {
  check_index_tensor(op, index);
  MMS_CHECK(index.dim() == 1, op, ": index must be 1-D, got ", shape_str(index.shape()));
  return index.stride(0);
}

// For the [M, K] index of gather/scatter: contiguous, and M * K must match.
void check_last_index(const char* op, const Tensor& index, int64_t rows, int64_t cols,
                      const Tensor& like) {
  check_index_tensor(op, index);
  check_contiguous(op, "index", index);
  MMS_CHECK(index.shape() == like.shape() && index.numel() == rows * cols, op, ": index ",
            shape_str(index.shape()), " must have the shape ", shape_str(like.shape()));
}

}  // namespace

void CpuBackend::index_select_rows(const Tensor& table, const Tensor& index, Tensor& out) {
  const char* op = "index_select_rows";
  const RowTable t = row_table(op, table);
  const int64_t stride = row_index_stride(op, index);
  const int64_t count = index.numel();
  check_contiguous(op, "out", out);
  MMS_CHECK(out.dtype() == table.dtype() && out.numel() == count * t.width, op, ": out ",
            shape_str(out.shape()), " cannot hold ", count, " rows of ", t.width, " ",
            dtype_name(table.dtype()));
  const int64_t* idx = index.data<int64_t>();
  check_bounds(op, idx, count, stride, t.rows, "rows");
  const size_t row_bytes = static_cast<size_t>(t.width) * table.element_size();
  const char* src = static_cast<const char*>(table.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  parallel_rows(count, count * t.width, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) std::memcpy(dst + i * row_bytes, src + idx[i * stride] * row_bytes, row_bytes);
  });
}

void CpuBackend::index_add_rows(const Tensor& grad, const Tensor& index, Tensor& table_grad) {
  const char* op = "index_add_rows";
  const RowTable t = row_table(op, table_grad);
  const int64_t stride = row_index_stride(op, index);
  const int64_t count = index.numel();
  check_contiguous(op, "grad", grad);
  MMS_CHECK(grad.dtype() == table_grad.dtype() && grad.numel() == count * t.width, op, ": grad ",
            shape_str(grad.shape()), " must hold ", count, " rows of ", t.width, " ",
            dtype_name(table_grad.dtype()));
  const int64_t* idx = index.data<int64_t>();
  check_bounds(op, idx, count, stride, t.rows, "rows");
  dispatch_floating(grad.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* g = grad.data<T>();
    T* dst = table_grad.data<T>();
    // Repeated indices make rows collide, so threads split the columns, not the rows:
    // each part owns a column band of every row and no two parts touch one value.
    const auto add_columns = [&](int64_t begin, int64_t end) {
      for (int64_t i = 0; i < count; ++i) {
        T* row = dst + idx[i * stride] * t.width;
        const T* src = g + i * t.width;
        for (int64_t j = begin; j < end; ++j) row[j] += src[j];
      }
    };
    if (t.width >= 64) {
      parallel_rows(t.width, count * t.width, add_columns);
    } else {
      add_columns(0, t.width);
    }
  });
}

void CpuBackend::gather_last(const Tensor& x, const Tensor& index, Tensor& out) {
  const char* op = "gather_last";
  check_contiguous(op, "x", x);
  check_contiguous(op, "out", out);
  MMS_CHECK(x.dim() >= 1, op, ": x must have at least one dim");
  const int64_t width = x.shape().back();
  const int64_t rows = width == 0 ? 0 : x.numel() / width;
  MMS_CHECK(out.dim() >= 1 && out.dtype() == x.dtype(), op, ": out ", shape_str(out.shape()),
            " ", dtype_name(out.dtype()), " does not match x ", dtype_name(x.dtype()));
  const int64_t picks = out.shape().back();
  MMS_CHECK(out.numel() == rows * picks, op, ": out ", shape_str(out.shape()),
            " does not have the rows of x ", shape_str(x.shape()));
  check_last_index(op, index, rows, picks, out);
  const int64_t* idx = index.data<int64_t>();
  check_bounds(op, idx, rows * picks, 1, width, "columns");
  dispatch_all(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* src = static_cast<const T*>(x.raw_data());
    T* dst = static_cast<T*>(out.raw_data());
    parallel_rows(rows, rows * picks, [&](int64_t begin, int64_t end) {
      for (int64_t m = begin; m < end; ++m) {
        for (int64_t k = 0; k < picks; ++k) dst[m * picks + k] = src[m * width + idx[m * picks + k]];
      }
    });
  });
}

void CpuBackend::scatter_add_last(const Tensor& grad, const Tensor& index, Tensor& out) {
  const char* op = "scatter_add_last";
  check_contiguous(op, "grad", grad);
  check_contiguous(op, "out", out);
  MMS_CHECK(out.dim() >= 1 && grad.dim() >= 1, op, ": operands must have at least one dim");
  const int64_t width = out.shape().back();
  const int64_t picks = grad.shape().back();
  const int64_t rows = picks == 0 ? (width == 0 ? 0 : out.numel() / width) : grad.numel() / picks;
  MMS_CHECK(grad.dtype() == out.dtype() && out.numel() == rows * width, op, ": grad ",
            shape_str(grad.shape()), " ", dtype_name(grad.dtype()), " does not match out ",
            shape_str(out.shape()), " ", dtype_name(out.dtype()));
  check_last_index(op, index, rows, picks, grad);
  const int64_t* idx = index.data<int64_t>();
  check_bounds(op, idx, rows * picks, 1, width, "columns");
  dispatch_floating(out.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* g = grad.data<T>();
    T* dst = out.data<T>();
    // rows are independent (collisions only happen within a row), so split rows
    parallel_rows(rows, rows * picks, [&](int64_t begin, int64_t end) {
      for (int64_t m = begin; m < end; ++m) {
        for (int64_t k = 0; k < picks; ++k) dst[m * width + idx[m * picks + k]] += g[m * picks + k];
      }
    });
  });
}

}  // namespace mms::cpu
