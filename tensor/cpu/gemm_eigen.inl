// The body of the Eigen batched GEMM, included by gemm.cpp and gemm_avx2.cpp inside
// namespace mms::cpu::gemm::<variant> (see gemm_kernel.h for why it is built twice).
//
// Each operand is mapped in place as a row-major Eigen matrix; a transposed operand is
// the .transpose() view of its map, which Eigen's GEMM reads as the other storage order
// (no copy). alpha folds into Eigen's GEMM kernel (`alpha * A * B` is recognised as a
// scaled product). beta == 0 never reads c, so c may hold uninitialised memory.
//
// Threads: Eigen's own GEMM threading is switched off (EIGEN_DONT_PARALLELIZE in every
// file that includes Eigen): it starts a parallel region for any product above 100K
// multiply-adds (~2 us of work) and its threads busy-wait on each other's packed
// blocks, so on 2 cores shared with other work one descheduled thread stalls the other
// for a whole time slice (measured: 28% of a fine-tuning step spent in that spin on a
// loaded 2-core machine). We thread at this level instead, one region per bmm call and
// only when the work is large (p.threads > 1): over the batch when there are enough
// GEMMs, else over the rows of C (its columns when C is short and wide), each thread
// running a serial Eigen GEMM on its block.

template <typename T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

template <typename T, typename OpA, typename OpB, typename OutC>
void gemm_one(const OpA& a, const OpB& b, OutC&& c, T alpha, T beta) {
  if (beta == T(0)) {
    c.noalias() = alpha * a * b;
  } else {
    if (beta != T(1)) c *= beta;
    c.noalias() += alpha * a * b;
  }
}

// C[i][r0:r0+rows, c0:c0+cols] of batch i.
template <typename T>
void gemm_block(const T* pa, const T* pb, T* pc, const GemmProblem& p, T alpha, T beta, int64_t i,
                int64_t r0, int64_t rows, int64_t c0, int64_t cols) {
  // Row-major maps with a run-time row stride (the packed row length when p's is 0):
  // Eigen's GEMM reads every operand through a stride anyway, so a packed operand costs
  // nothing extra this way.
  using Stride = Eigen::OuterStride<>;
  using ConstMap = Eigen::Map<const RowMatrix<T>, Eigen::Unaligned, Stride>;
  const int64_t m = p.m, n = p.n, k = p.k;
  const int64_t lda = p.lda ? p.lda : (p.trans_a ? m : k);
  const int64_t ldb = p.ldb ? p.ldb : (p.trans_b ? k : n);
  const int64_t ldc = p.ldc ? p.ldc : n;
  Eigen::Map<RowMatrix<T>, Eigen::Unaligned, Stride> whole(pc + i * m * ldc, m, n, Stride(ldc));
  auto c = whole.block(r0, c0, rows, cols);
  if (k == 0) {  // an empty inner dim: the product is zero
    if (beta == T(0)) c.setZero(); else c *= beta;
    return;
  }
  const T* ai = pa + i * p.a_step;
  const T* bi = pb + i * p.b_step;
  // op(a) rows r0.. and op(b) columns c0.. as views of the stored operands (no copy)
  if (!p.trans_a && !p.trans_b) {
    gemm_one<T>(ConstMap(ai + r0 * lda, rows, k, Stride(lda)), ConstMap(bi, k, n, Stride(ldb)).middleCols(c0, cols),
                c, alpha, beta);
  } else if (p.trans_a && !p.trans_b) {
    gemm_one<T>(ConstMap(ai, k, m, Stride(lda)).middleCols(r0, rows).transpose(),
                ConstMap(bi, k, n, Stride(ldb)).middleCols(c0, cols), c, alpha, beta);
  } else if (!p.trans_a && p.trans_b) {
    gemm_one<T>(ConstMap(ai + r0 * lda, rows, k, Stride(lda)),
                ConstMap(bi + c0 * ldb, cols, k, Stride(ldb)).transpose(), c, alpha, beta);
  } else {
    gemm_one<T>(ConstMap(ai, k, m, Stride(lda)).middleCols(r0, rows).transpose(),
                ConstMap(bi + c0 * ldb, cols, k, Stride(ldb)).transpose(), c, alpha, beta);
  }
}

template <typename T>
void bmm_eigen(const T* pa, const T* pb, T* pc, const GemmProblem& p, T alpha, T beta) {
  const int64_t m = p.m, n = p.n;
  if (p.threads <= 1) {
    for (int64_t i = 0; i < p.batches; ++i) gemm_block(pa, pb, pc, p, alpha, beta, i, 0, m, 0, n);
  } else if (p.batches >= p.threads) {
    parallel_ranges(p.batches, p.threads, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) gemm_block(pa, pb, pc, p, alpha, beta, i, 0, m, 0, n);
    });
  } else {
    // Few large GEMMs: split each along its longer side of C, in multiples of 16 (whole
    // register tiles of Eigen's kernel).
    const bool by_rows = m >= n;
    const int64_t extent = by_rows ? m : n;
    const int64_t chunk = ((extent + p.threads - 1) / p.threads + 15) / 16 * 16;
    const int64_t parts = (extent + chunk - 1) / chunk;
    parallel_parts(p.batches * parts, [&](int64_t job) {
        const int64_t i = job / parts, part = job % parts;
        const int64_t start = part * chunk, len = std::min(chunk, extent - start);
        if (by_rows) {
          gemm_block(pa, pb, pc, p, alpha, beta, i, start, len, 0, n);
        } else {
          gemm_block(pa, pb, pc, p, alpha, beta, i, 0, m, start, len);
        }
    });
  }
}

void bmm(const float* a, const float* b, float* c, const GemmProblem& p, float alpha, float beta) {
  bmm_eigen<float>(a, b, c, p, alpha, beta);
}
void bmm(const double* a, const double* b, double* c, const GemmProblem& p, double alpha,
         double beta) {
  bmm_eigen<double>(a, b, c, p, alpha, beta);
}
