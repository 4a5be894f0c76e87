// A float32 GEMM for AVX-512, written out: c = alpha op(a) op(b) + beta c, row-major.
//
// Why not Eigen's: on the ViT-B/32 linear shapes (400 rows x 768 -> 768 or 3072 and
// back, 12 weights in turn; bench/cpu_ops) on a 2-core Xeon with two 512-bit FMA units
// (measured peak 481 GFLOP/s), Eigen 3.4's AVX-512 build ran at 152-176 GFLOP/s on one
// thread and 294-346 on two, and the image tower spends ~88% of its time in GEMMs. This
// kernel ran at 187-197 and 306-381 in the same sitting (MKL: 347-378 on two;
// docs/performance_cpu.md). The difference is not the inner loop (Eigen's is
// fine) but the shape of the work around it: Eigen's 48 x 4 register tile reads 7
// values per 12 FMAs and its row-major weight packing gathers one float from each of 48
// rows at a time; here the tile is 48 x 8 (24 accumulators, 11 loads per 24 FMAs) and
// the packing moves 16 x 16 blocks through registers.
//
// The lesson, in loops (C is M x N; the "panel" operand op(b) supplies 48 columns of
// C as three 16-wide vectors; the "strip" operand op(a) supplies 8 rows as broadcasts):
//
//   for each depth block k0 (kc <= 384 deep: a panel, 48 x kc floats, stays in L2):
//     pack this thread's rows of op(a) into 8-row strips   [strip][k][8]
//     for each 48-column panel of op(b):
//       pack it                                            [k][48]
//       for each strip: the micro-kernel
//         acc[8][3] += strip[k][i] * panel[k][0:48]   for k in the block
//         C tile = alpha acc + beta C  (first block)  or  C tile += alpha acc  (later)
//
// Threads split the columns of C (whole panels) when C has at least as many columns as
// rows, and then pack the strips, which all of them read, together once per depth
// block; else they split its rows (whole strips), each packing its own strips and every
// panel.
//
// C at most 64 columns wide (16, 32, 48, 64) takes a narrow path without packing: see
// "narrow products" below.
//
// Only this file is compiled with AVX-512 (CMakeLists.txt). Everything in it but the
// two entry points has internal linkage and it uses no inline library template (no
// std::vector, no std::min), so no AVX-512 instance of shared code can be picked by the
// linker for code that runs on a CPU without AVX-512 (see gemm_kernel.h).
#include <cstdint>
#include <cstdlib>

#include "tensor/cpu/gemm_kernel.h"

#if defined(__AVX512F__) && defined(__AVX512DQ__)
#include <immintrin.h>

#include "tensor/cpu/simd512.h"

namespace mms::cpu::gemm::avx512_sgemm {

namespace {

using simd512::first_lanes;
using simd512::transpose16x16;

constexpr int64_t kPanel = 48;   // columns of C per micro-tile: three 16-float vectors
constexpr int64_t kStrip = 8;    // rows of C per micro-tile: eight broadcasts
constexpr int64_t kDepth = 384;  // depth block: a packed panel is 48 x 384 x 4 B = 72 KiB

int64_t smaller(int64_t x, int64_t y) { return x < y ? x : y; }
int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

// A per-thread scratch buffer, 64-byte aligned, grown on demand and kept for the
// thread's life (the pool's threads run many GEMMs).
struct Scratch {
  float* data = nullptr;
  int64_t capacity = 0;
  float* get(int64_t floats) {
    if (floats > capacity) {
      std::free(data);
      capacity = round_up(floats, 1024);
      data = static_cast<float*>(std::aligned_alloc(64, static_cast<size_t>(capacity) * sizeof(float)));
      if (data == nullptr) std::abort();  // out of memory inside a pool part: nothing sane to throw to
    }
    return data;
  }
  ~Scratch() { std::free(data); }
};
thread_local Scratch strip_scratch, panel_scratch;

// A matrix operand as stored: element (row, col) of op(x) at data[row * row_step + col * col_step].
struct Operand {
  const float* data;
  int64_t row_step, col_step;
  float at(int64_t row, int64_t col) const { return data[row * row_step + col * col_step]; }
};

// panel[k][0:48] = op(b)[k0 + k][n0 + 0:48] for k < depth; columns past `cols` are 0.
// op(b) = b^T (b stored [N, K], col_step = ldb): 16 x 16 blocks transposed in registers.
// op(b) = b    (b stored [K, N], col_step = 1):  contiguous (masked) row copies.
void pack_panel(const Operand& b, int64_t k0, int64_t n0, int64_t depth, int64_t cols, float* panel) {
  if (b.col_step == 1) {
    for (int64_t k = 0; k < depth; ++k) {
      const float* src = b.data + (k0 + k) * b.row_step + n0;
      for (int64_t v = 0; v < kPanel; v += 16)
        _mm512_store_ps(panel + k * kPanel + v, _mm512_maskz_loadu_ps(first_lanes(cols - v), src + v));
    }
    return;
  }
  int64_t k = 0;
  if (cols == kPanel) {
    for (; k + 16 <= depth; k += 16) {
      for (int64_t g = 0; g < kPanel; g += 16) {
        __m512 r[16];
        for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(b.data + (n0 + g + i) * b.col_step + k0 + k);
        transpose16x16(r);
        for (int i = 0; i < 16; ++i) _mm512_store_ps(panel + (k + i) * kPanel + g, r[i]);
      }
    }
  }
  for (; k < depth; ++k)
    for (int64_t j = 0; j < kPanel; ++j) panel[k * kPanel + j] = j < cols ? b.at(k0 + k, n0 + j) : 0.0f;
}

// strips[s][k][0:8] = op(a)[m0 + 8 s + 0:8][k0 + k] for k < depth; rows past `rows` are 0.
// op(a) = a   (a stored [M, K], row_step = lda): 8 x 8 blocks transposed in registers.
// op(a) = a^T (a stored [K, M], row_step = 1):   contiguous (masked) copies of 8 floats.
void pack_strips(const Operand& a, int64_t m0, int64_t k0, int64_t rows, int64_t depth, float* strips) {
  for (int64_t s = 0; s * kStrip < rows; ++s) {
    float* strip = strips + s * depth * kStrip;
    const int64_t first = m0 + s * kStrip, valid = smaller(kStrip, rows - s * kStrip);
    int64_t k = 0;
    if (a.row_step == 1) {
      // lanes i < valid read, the rest 0 (AVX's maskload: no AVX-512VL needed)
      const __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(valid)),
                                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
      for (; k < depth; ++k)
        _mm256_store_ps(strip + k * kStrip, _mm256_maskload_ps(a.data + (k0 + k) * a.col_step + first, keep));
      continue;
    }
    if (valid == kStrip) {
      for (; k + 8 <= depth; k += 8) {
        __m256 r[8];
        for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(a.data + (first + i) * a.row_step + k0 + k);
        // the classic 8 x 8 transpose: pairs, then 2 x 2 blocks, then 128-bit halves
        const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
        const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
        const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
        const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
        const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
        const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
        const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
        const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
        float* out = strip + k * kStrip;
        _mm256_store_ps(out + 0 * kStrip, _mm256_permute2f128_ps(s0, s4, 0x20));
        _mm256_store_ps(out + 1 * kStrip, _mm256_permute2f128_ps(s1, s5, 0x20));
        _mm256_store_ps(out + 2 * kStrip, _mm256_permute2f128_ps(s2, s6, 0x20));
        _mm256_store_ps(out + 3 * kStrip, _mm256_permute2f128_ps(s3, s7, 0x20));
        _mm256_store_ps(out + 4 * kStrip, _mm256_permute2f128_ps(s0, s4, 0x31));
        _mm256_store_ps(out + 5 * kStrip, _mm256_permute2f128_ps(s1, s5, 0x31));
        _mm256_store_ps(out + 6 * kStrip, _mm256_permute2f128_ps(s2, s6, 0x31));
        _mm256_store_ps(out + 7 * kStrip, _mm256_permute2f128_ps(s3, s7, 0x31));
      }
    }
    for (; k < depth; ++k)
      for (int64_t i = 0; i < kStrip; ++i) strip[k * kStrip + i] = i < valid ? a.at(first + i, k0 + k) : 0.0f;
  }
}

// The micro-kernel: an 8 x 48 tile of C from one strip and one panel, depth floats deep.
// 24 accumulators live in registers for the whole loop; each step loads three panel
// vectors and broadcasts eight strip values (11 loads for 24 FMAs). `first`: the first
// depth block, which writes alpha acc + beta C (C not read when beta is 0) + the tile's
// 48 entries of `bias` (when not null: a linear layer's bias, added in the same pass);
// later blocks add alpha acc. Rows past `rows` and columns past `cols` are not touched.
void micro_kernel(const float* panel, const float* strip, int64_t depth, float* c, int64_t ldc, int64_t rows,
                  int64_t cols, float alpha, float beta, const float* bias, bool first) {
  __m512 acc[kStrip][3];
  for (auto& row : acc)
    for (auto& v : row) v = _mm512_setzero_ps();
  for (int64_t k = 0; k < depth; ++k) {
    const __m512 p0 = _mm512_load_ps(panel), p1 = _mm512_load_ps(panel + 16), p2 = _mm512_load_ps(panel + 32);
    _mm_prefetch(reinterpret_cast<const char*>(panel + 8 * kPanel), _MM_HINT_T0);
#pragma GCC unroll 8
    for (int i = 0; i < kStrip; ++i) {
      const __m512 s = _mm512_set1_ps(strip[i]);
      acc[i][0] = _mm512_fmadd_ps(p0, s, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(p1, s, acc[i][1]);
      acc[i][2] = _mm512_fmadd_ps(p2, s, acc[i][2]);
    }
    panel += kPanel;
    strip += kStrip;
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  const __mmask16 lanes[3] = {first_lanes(cols), first_lanes(cols - 16), first_lanes(cols - 32)};
  __m512 add[3];
  for (int v = 0; v < 3; ++v)
    add[v] = first && bias ? _mm512_maskz_loadu_ps(lanes[v], bias + 16 * v) : _mm512_setzero_ps();
  for (int64_t i = 0; i < rows; ++i) {
    float* row = c + i * ldc;
    for (int v = 0; v < 3; ++v) {
      if (lanes[v] == 0) continue;
      __m512 out = _mm512_fmadd_ps(va, acc[i][v], add[v]);
      if (!first) {
        out = _mm512_add_ps(out, _mm512_maskz_loadu_ps(lanes[v], row + 16 * v));
      } else if (beta != 0.0f) {
        out = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(lanes[v], row + 16 * v), out);
      }
      _mm512_mask_storeu_ps(row + 16 * v, lanes[v], out);
    }
  }
}

// One depth block [k0, k0 + depth) of C[m0:m1, n0:n1]: its panels packed here, its
// strips (rows m0..m1 of op(a), packed by pack_strips) given.
void depth_block(const float* strips, const Operand& b, float* c, int64_t ldc, int64_t k0, int64_t depth, int64_t m0,
                 int64_t m1, int64_t n0, int64_t n1, float alpha, float beta, const float* bias) {
  float* panel = panel_scratch.get(kPanel * depth);
  for (int64_t n = n0; n < n1; n += kPanel) {
    const int64_t cols = smaller(kPanel, n1 - n);
    pack_panel(b, k0, n, depth, cols, panel);
    for (int64_t m = m0; m < m1; m += kStrip) {
      micro_kernel(panel, strips + (m - m0) * depth, depth, c + m * ldc + n, ldc, smaller(kStrip, m1 - m), cols,
                   alpha, beta, bias ? bias + n : nullptr, k0 == 0);
    }
  }
}

// C[m0:m1, n0:n1] of one GEMM (a, b, c already offset to its batch), on this thread.
void gemm_block(const Operand& a, const Operand& b, float* c, int64_t ldc, int64_t k, int64_t m0, int64_t m1,
                int64_t n0, int64_t n1, float alpha, float beta, const float* bias) {
  for (int64_t k0 = 0; k0 < k; k0 += kDepth) {
    const int64_t depth = smaller(kDepth, k - k0);
    float* strips = strip_scratch.get(round_up(m1 - m0, kStrip) * depth);
    pack_strips(a, m0, k0, m1 - m0, depth, strips);
    depth_block(strips, b, c, ldc, k0, depth, m0, m1, n0, n1, alpha, beta, bias);
  }
}

// ---- narrow products: C at most 64 columns wide ------------------------------------
//
// A 48-wide panel fits 64 columns badly (a second panel one-third full), and the tiny
// default model's layers are 64 wide, forward and backward. With N <= 64, op(b) is
// small ([K][N]: at most 64 KiB for K = 256) and C's rows are at most four vectors, so
// nothing needs packing but op(b) when it is transposed (a weight W^T, transposed once
// per call through 16 x 16 blocks): simd512.h's broadcast product, 6 rows x N tiles,
// op(a)'s values broadcast straight from memory, each read once.
//
//   for each 6-row tile of C:  acc[6][N/16] += op(a)[row][k] * B[k][0:N]   for k < K
//
// Each row is summed over k in order, in one pass, whatever rows share its batch.
constexpr int64_t kNarrowMax = 64;

// Rows [m0, m1) of one narrow GEMM on this thread, B = op(b) as [k][n] rows.
void narrow_block(const Operand& a, int64_t m0, int64_t m1, const float* b, int64_t ldb, int64_t k, int64_t n,
                  float* c, int64_t ldc, float alpha, float beta, const float* bias) {
  simd512::broadcast_product(m1 - m0, n, k, {a.data + m0 * a.row_step, a.row_step, a.col_step}, b, ldb,
                             c + m0 * ldc, ldc, alpha, beta, bias);
}

// op(b) is re-read for every 6-row tile, so it must stay in L2: at most 1 MiB (k <= 4096
// at n = 64); deeper ones (a weight gradient over many thousand tokens) go to Eigen.
constexpr int64_t kNarrowMaxB = int64_t(1) << 18;  // floats
bool narrow(const GemmProblem& p) {
  return p.n % 16 == 0 && p.n <= kNarrowMax && p.n > 0 && p.k >= 16 && p.k * p.n <= kNarrowMaxB;
}

// The whole call on the narrow path: op(b) transposed when it is b^T, once per call when
// every batch shares b (b_step 0), else once per batch (by the thread that runs it when
// threads take whole batches); the rows of C split among threads.
void narrow_bmm(const float* pa, const float* pb, float* pc, const GemmProblem& p, int64_t lda, int64_t ldb,
                int64_t ldc, float alpha, float beta, const float* bias) {
  const int64_t m = p.m, n = p.n, k = p.k;
  auto operand_a = [&](int64_t i) {
    return p.trans_a ? Operand{pa + i * p.a_step, 1, lda} : Operand{pa + i * p.a_step, lda, 1};
  };
  const float* shared_b = nullptr;  // b^T of a b shared by all batches, in this thread's scratch
  if (p.trans_b && p.b_step == 0) {
    float* out = panel_scratch.get(k * n);
    simd512::transpose_padded(pb, ldb, n, k, out, n);
    shared_b = out;
  }
  // op(b) as [k][n] rows: b itself, or its transpose (shared, or in this thread's scratch).
  auto rows_of_b = [&](int64_t i, int64_t& stride) {
    const float* b = pb + i * p.b_step;
    if (!p.trans_b) {
      stride = ldb;
      return b;
    }
    stride = n;
    if (shared_b) return shared_b;
    float* out = panel_scratch.get(k * n);
    simd512::transpose_padded(b, ldb, n, k, out, n);
    return static_cast<const float*>(out);
  };
  auto whole = [&](int64_t i) {
    int64_t stride = 0;
    const float* b = rows_of_b(i, stride);
    narrow_block(operand_a(i), 0, m, b, stride, k, n, pc + i * m * ldc, ldc, alpha, beta, bias);
  };
  const int64_t tiles = (m + simd512::kBroadcastRows - 1) / simd512::kBroadcastRows;
  if (p.threads <= 1 || (p.batches < p.threads && tiles < 2)) {
    for (int64_t i = 0; i < p.batches; ++i) whole(i);
    return;
  }
  if (p.batches >= p.threads) {
    parallel_ranges(p.batches, p.threads, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) whole(i);
    });
    return;
  }
  const int64_t parts = smaller(p.threads, tiles);
  for (int64_t i = 0; i < p.batches; ++i) {
    int64_t stride = 0;
    const float* b = rows_of_b(i, stride);  // read by every part
    const Operand a = operand_a(i);
    float* c = pc + i * m * ldc;
    parallel_parts(parts, [&](int64_t part) {
      const int64_t begin = smaller(m, tiles * part / parts * simd512::kBroadcastRows);
      const int64_t end = smaller(m, tiles * (part + 1) / parts * simd512::kBroadcastRows);
      if (begin < end) narrow_block(a, begin, end, b, stride, k, n, c, ldc, alpha, beta, bias);
    });
  }
}

}  // namespace

bool compiled() { return true; }

bool takes(const GemmProblem& p) {
  // At least two panels wide and a little depth: CLIP's linear layers (and the tiny
  // default model's 192- and 256-wide ones); or 16 to 64 wide in whole vectors, on the
  // narrow path (the tiny model's 64-wide layers, forward and backward: the default
  // step went from 11.2 to 10.4 ms, median of 8 A/B rounds on the 2-core Xeon; with the
  // panels, a second, one-third-full one had made it slower). Widths in between stay
  // with Eigen, and so do attention's per-head products (gemm.cpp). The rule does not
  // look at m: each element of C is summed over k in the same order whatever the number
  // of rows (depth blocks of kDepth in order, or one pass on the narrow path), so a
  // row's result does not depend on which other rows share its batch.
  return (p.n >= 2 * kPanel && p.k >= 32) || narrow(p);
}

void bmm(const float* pa, const float* pb, float* pc, const GemmProblem& p, float alpha, float beta,
         const float* bias) {
  const int64_t m = p.m, n = p.n, k = p.k;
  const int64_t lda = p.lda ? p.lda : (p.trans_a ? m : k);
  const int64_t ldb = p.ldb ? p.ldb : (p.trans_b ? k : n);
  const int64_t ldc = p.ldc ? p.ldc : n;
  if (narrow(p)) return narrow_bmm(pa, pb, pc, p, lda, ldb, ldc, alpha, beta, bias);
  auto operand_a = [&](int64_t i) {  // batch i's op(a) and op(b)
    return p.trans_a ? Operand{pa + i * p.a_step, 1, lda} : Operand{pa + i * p.a_step, lda, 1};
  };
  auto operand_b = [&](int64_t i) {
    return p.trans_b ? Operand{pb + i * p.b_step, 1, ldb} : Operand{pb + i * p.b_step, ldb, 1};
  };
  auto run = [&](int64_t i, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    gemm_block(operand_a(i), operand_b(i), pc + i * m * ldc, ldc, k, m0, m1, n0, n1, alpha, beta, bias);
  };
  if (p.threads <= 1) {
    for (int64_t i = 0; i < p.batches; ++i) run(i, 0, m, 0, n);
    return;
  }
  if (p.batches >= p.threads) {  // whole GEMMs per thread
    parallel_ranges(p.batches, p.threads, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) run(i, 0, m, 0, n);
    });
    return;
  }
  // Split each GEMM along C's longer side, in whole panels or strips.
  const bool by_columns = n >= m;
  const int64_t unit = by_columns ? kPanel : kStrip, extent = by_columns ? n : m;
  const int64_t units = (extent + unit - 1) / unit;
  const int64_t parts = smaller(p.threads, units);
  // Part `part`'s share [begin, end) of `count` units of `size` (capped at `limit`).
  auto share = [parts](int64_t part, int64_t count, int64_t size, int64_t limit, int64_t& begin, int64_t& end) {
    begin = smaller(limit, count * part / parts * size);
    end = smaller(limit, count * (part + 1) / parts * size);
  };
  if (!by_columns) {  // each thread packs its own rows' strips and every panel
    parallel_parts(p.batches * parts, [&](int64_t job) {
      int64_t begin, end;
      share(job % parts, units, kStrip, m, begin, end);
      if (begin < end) run(job / parts, begin, end, 0, n);
    });
    return;
  }
  // Split by columns, every thread needs all the strips: they are packed once, by all
  // threads together, per depth block, into the calling thread's buffer, and then read
  // by all (two pool jobs per block; the first returns when every strip is packed).
  const int64_t strip_count = (m + kStrip - 1) / kStrip;
  for (int64_t i = 0; i < p.batches; ++i) {
    const Operand a = operand_a(i), b = operand_b(i);
    float* c = pc + i * m * ldc;
    for (int64_t k0 = 0; k0 < k; k0 += kDepth) {
      const int64_t depth = smaller(kDepth, k - k0);
      float* strips = strip_scratch.get(strip_count * kStrip * depth);
      parallel_parts(parts, [&](int64_t part) {
        int64_t begin, end;
        share(part, strip_count, kStrip, m, begin, end);
        if (begin < end) pack_strips(a, begin, k0, end - begin, depth, strips + begin * depth);
      });
      parallel_parts(parts, [&](int64_t part) {
        int64_t begin, end;
        share(part, units, kPanel, n, begin, end);
        if (begin < end) depth_block(strips, b, c, ldc, k0, depth, 0, m, begin, end, alpha, beta, bias);
      });
    }
  }
}

}  // namespace mms::cpu::gemm::avx512_sgemm

#else  // not compiled with AVX-512: bmm never picks this kernel

namespace mms::cpu::gemm::avx512_sgemm {
bool compiled() { return false; }
bool takes(const GemmProblem&) { return false; }
void bmm(const float*, const float*, float*, const GemmProblem&, float, float, const float*) { std::abort(); }
}  // namespace mms::cpu::gemm::avx512_sgemm

#endif
