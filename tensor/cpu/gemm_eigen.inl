// The body of the Eigen batched GEMM, included by gemm.cpp and gemm_avx2.cpp inside
// namespace mms::cpu::gemm::<variant> (see gemm_kernel.h for why it is built twice).
//
// Each operand is mapped in place as a row-major Eigen matrix; a transposed operand is
// the .transpose() view of its map, which Eigen's GEMM reads as the other storage order
// (no copy). alpha folds into Eigen's GEMM kernel (`alpha * A * B` is recognised as a
// scaled product). beta == 0 never reads c, so c may hold uninitialised memory.
//
// Threads: Eigen parallelises one large GEMM itself with OpenMP. For a batch of small
// GEMMs that is mostly overhead, so the caller may ask to split the batch over threads
// instead; Eigen sees it is inside a parallel region and stays serial, so the two
// levels never oversubscribe.

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
void bmm_eigen(const T* pa, const T* pb, T* pc, const GemmProblem& p, T alpha, T beta) {
  using ConstMap = Eigen::Map<const RowMatrix<T>>;
  const int64_t m = p.m, n = p.n, k = p.k;
  auto one = [&](int64_t i) {
    Eigen::Map<RowMatrix<T>> c(pc + i * m * n, m, n);
    if (k == 0) {  // an empty inner dim: the product is zero
      if (beta == T(0)) c.setZero(); else c *= beta;
      return;
    }
    const T* ai = pa + i * p.a_step;
    const T* bi = pb + i * p.b_step;
    if (!p.trans_a && !p.trans_b) {
      gemm_one<T>(ConstMap(ai, m, k), ConstMap(bi, k, n), c, alpha, beta);
    } else if (p.trans_a && !p.trans_b) {
      gemm_one<T>(ConstMap(ai, k, m).transpose(), ConstMap(bi, k, n), c, alpha, beta);
    } else if (!p.trans_a && p.trans_b) {
      gemm_one<T>(ConstMap(ai, m, k), ConstMap(bi, n, k).transpose(), c, alpha, beta);
    } else {
      gemm_one<T>(ConstMap(ai, k, m).transpose(), ConstMap(bi, n, k).transpose(), c, alpha, beta);
    }
  };
  if (p.split_batch) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < p.batches; ++i) one(i);
  } else {
    // outside any parallel region, so Eigen may thread each GEMM itself
    for (int64_t i = 0; i < p.batches; ++i) one(i);
  }
}

void bmm(const float* a, const float* b, float* c, const GemmProblem& p, float alpha, float beta) {
  bmm_eigen<float>(a, b, c, p, alpha, beta);
}
void bmm(const double* a, const double* b, double* c, const GemmProblem& p, double alpha,
         double beta) {
  bmm_eigen<double>(a, b, c, p, alpha, beta);
}
