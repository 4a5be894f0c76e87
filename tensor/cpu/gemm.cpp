// Batched GEMM through Eigen: out[b] = alpha * op(a[b]) @ op(b[b]) + beta * out[b].
//
// Each operand is mapped in place as a row-major Eigen matrix; a transposed operand is
// the .transpose() view of its map, which Eigen's GEMM reads as the other storage order
// (no copy). alpha folds into Eigen's GEMM kernel (`alpha * A * B` is recognised as a
// scaled product). beta == 0 never reads out, so out may hold uninitialised memory.
//
// Threads: Eigen parallelises one large GEMM itself with OpenMP. For a batch of small
// GEMMs (attention heads, tiny matrices) that is mostly overhead, so we split the batch
// over threads instead; Eigen sees it is inside a parallel region and stays serial, so
// the two levels never oversubscribe.
#include <Eigen/Core>

#include "tensor/cpu/cpu_backend.h"

namespace mms::cpu {

namespace {

// Below this many multiply-adds (128^3) one GEMM is too small for Eigen's own threading
// to pay, so batches of them are better split across threads.
constexpr int64_t kSmallGemmMacs = int64_t(1) << 21;

template <typename T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

template <typename T, typename OpA, typename OpB>
void gemm_one(const OpA& a, const OpB& b, Eigen::Map<RowMatrix<T>>& c, T alpha, T beta) {
  if (beta == T(0)) {
    c.noalias() = alpha * a * b;
  } else {
    if (beta != T(1)) c *= beta;
    c.noalias() += alpha * a * b;
  }
}

template <typename T>
void bmm_typed(const Tensor& a, const Tensor& b, Tensor& out, bool trans_a, bool trans_b, T alpha,
               T beta) {
  const int64_t batches = out.size(0), m = out.size(1), n = out.size(2);
  const int64_t k = trans_a ? a.size(1) : a.size(2);
  const int64_t a_step = a.size(0) == 1 ? 0 : m * k;  // batch 1 broadcasts
  const int64_t b_step = b.size(0) == 1 ? 0 : k * n;
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  T* pc = out.data<T>();
  using ConstMap = Eigen::Map<const RowMatrix<T>>;

  auto one = [&](int64_t i) {
    Eigen::Map<RowMatrix<T>> c(pc + i * m * n, m, n);
    if (k == 0) {  // an empty inner dim: the product is zero
      if (beta == T(0)) c.setZero(); else c *= beta;
      return;
    }
    const T* ai = pa + i * a_step;
    const T* bi = pb + i * b_step;
    // stored shapes: a [M, K] or [K, M] when trans_a; b [K, N] or [N, K] when trans_b
    if (!trans_a && !trans_b) {
      gemm_one<T>(ConstMap(ai, m, k), ConstMap(bi, k, n), c, alpha, beta);
    } else if (trans_a && !trans_b) {
      gemm_one<T>(ConstMap(ai, k, m).transpose(), ConstMap(bi, k, n), c, alpha, beta);
    } else if (!trans_a && trans_b) {
      gemm_one<T>(ConstMap(ai, m, k), ConstMap(bi, n, k).transpose(), c, alpha, beta);
    } else {
      gemm_one<T>(ConstMap(ai, k, m).transpose(), ConstMap(bi, n, k).transpose(), c, alpha, beta);
    }
  };

  const bool split_batch = batches >= 2 && m * n * k <= kSmallGemmMacs &&
                           parallel_worth_it(batches, batches * m * n * k);
  if (split_batch) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < batches; ++i) one(i);
  } else {
    // outside any parallel region, so Eigen may thread each GEMM itself
    for (int64_t i = 0; i < batches; ++i) one(i);
  }
}

}  // namespace

void CpuBackend::bmm(const Tensor& a, const Tensor& b, Tensor& out, bool trans_a, bool trans_b,
                     double alpha, double beta) {
  const char* op = "bmm";
  MMS_CHECK(a.dim() == 3 && b.dim() == 3 && out.dim() == 3, op, ": operands must be 3-D, got ",
            shape_str(a.shape()), ", ", shape_str(b.shape()), " -> ", shape_str(out.shape()));
  check_contiguous(op, "a", a);
  check_contiguous(op, "b", b);
  check_contiguous(op, "out", out);
  MMS_CHECK(a.dtype() == b.dtype() && a.dtype() == out.dtype(), op, ": dtypes differ (",
            dtype_name(a.dtype()), ", ", dtype_name(b.dtype()), " -> ",
            dtype_name(out.dtype()), ")");
  const int64_t m = out.size(1), n = out.size(2);
  const int64_t a_rows = trans_a ? a.size(2) : a.size(1), k = trans_a ? a.size(1) : a.size(2);
  const int64_t b_inner = trans_b ? b.size(2) : b.size(1), b_cols = trans_b ? b.size(1) : b.size(2);
  MMS_CHECK(a_rows == m && b_cols == n && b_inner == k, op, ": shapes ", shape_str(a.shape()),
            (trans_a ? "^T" : ""), " and ", shape_str(b.shape()), (trans_b ? "^T" : ""),
            " do not multiply into ", shape_str(out.shape()));
  const int64_t batches = out.size(0);
  MMS_CHECK((a.size(0) == batches || a.size(0) == 1) && (b.size(0) == batches || b.size(0) == 1),
            op, ": batch sizes ", a.size(0), " and ", b.size(0), " do not broadcast to ",
            batches);
  if (out.numel() == 0) return;
  dispatch_floating(a.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    bmm_typed<T>(a, b, out, trans_a, trans_b, static_cast<T>(alpha), static_cast<T>(beta));
  });
}

}  // namespace mms::cpu
