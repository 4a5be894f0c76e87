// Scaled dot-product attention, the CPU reference: per (batch, head), with Eigen GEMMs.
//
// Shapes: q [B, H, Lq, D], k and v [B, H, Lk, D], out [B, H, Lq, D], lse [B, H, Lq];
// key_keep [B, Lk] (nonzero = attend), causal hides key j > query i.
// q, k, v, out, and in the backward grad_out and the gradients, may be any views whose
// last dim is contiguous: each head is an [L, D] block read and written through its row
// stride. So the heads of a packed projection ([B, L, 3, H, D] memory) are read where
// they lie, and an output laid out as [B, L, H, D] merges back into [B, L, H * D] as a
// view: no gather before attention and no scatter after it, forward or backward
// (tensor/ops/attention.cpp asks for this through Backend::attention_reads_views).
// Forward, per (b, h):
//   S = scale * Q K^T (masked entries -inf),  lse_i = log sum_j exp(S_ij),
//   P = exp(S - lse),  O = P V.  A query with no visible key gets O = 0, lse = -inf.
// Backward (the standard formulas, as in FlashAttention's paper):
//   dV = P^T dO,  dP = dO V^T,  D_i = sum_d dO_id O_id,  dS = P * (dP - D),
//   dQ = scale dS K,  dK = scale dS^T Q.
// The backward recomputes P from q and k with an exact row softmax rather than from the
// saved lse: one extra pass over S, small beside the four GEMMs, and it keeps float64
// gradients exact even when lse was saved in float32.
//
// float32 heads whose head_dim is a multiple of 16 run attention_avx512.cpp's kernels
// instead where the CPU has AVX-512 (attention_kernel.h: broadcast FMAs, one register per
// 16 head dims: the default fine-tune step's attention, forward and backward, went
// from 2.4 to 1.4 ms on the 2-core AVX-512 Xeon, bench/step --profile).
//
// (b, h) pairs run in parallel with per-thread [Lq, Lk] scratch; inside a parallel
// region each GEMM is single-threaded (gemm::serial: the SIMD build bmm uses, AVX-512 or
// AVX2 where the CPU has it; the baseline Eigen compiled into this file would run SSE2:
// 4.6 vs 5.7 ms of attention per default fine-tuning step on an AVX-512 Xeon, and plain
// vectorised loops instead of GEMMs for these D = 16, L = 17-20 heads were slower
// still, 7.8 ms). Eigen's own GEMM threading is off in every file of the library
// (EIGEN_DONT_PARALLELIZE; why: tensor/cpu/gemm_eigen.inl).
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>

#include "tensor/cpu/attention_kernel.h"
#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/gemm_kernel.h"
#include "tensor/cpu/parallel.h"

namespace mms::cpu {

namespace {

template <typename T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct AttentionDims {
  int64_t batch, heads, lq, lk, d;
};

// A [B, H, L, D] tensor whose last dim is contiguous (size-1 dims may have any stride).
void check_rows_contiguous(const char* op, const char* what, const Tensor& t) {
  MMS_CHECK(t.dim() != 4 || t.size(3) <= 1 || t.stride(3) == 1, op, ": ", what, " ", shape_str(t.shape()),
            " with strides ", shape_str(t.strides()), " must have a contiguous last dim (head_dim)");
}

// One (b, h) head of a [B, H, L, D] view: an [L, D] row-major block with row stride `rows`.
template <typename T>
struct Heads {
  T* base;
  int64_t batch_stride, head_stride, rows;
  Heads(T* data, const Tensor& t) : base(data), batch_stride(t.stride(0)), head_stride(t.stride(1)), rows(t.stride(2)) {}
  // the head of flat index bh = b * heads + h
  gemm::RowsAt<T> at(int64_t bh, int64_t heads) const {
    return {base + (bh / heads) * batch_stride + (bh % heads) * head_stride, rows};
  }
};
template <typename T>
Heads<const T> read_heads(const Tensor& t) { return Heads<const T>(t.data<T>(), t); }
template <typename T>
Heads<T> write_heads(Tensor& t) { return Heads<T>(t.data<T>(), t); }
template <typename T>
gemm::RowsAt<const T> as_const(gemm::RowsAt<T> m) { return {m.data, m.stride}; }

AttentionDims check_attention(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& key_keep) {
  MMS_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, op, ": q, k, v must be 4-D, got ",
            shape_str(q.shape()), ", ", shape_str(k.shape()), ", ", shape_str(v.shape()));
  check_rows_contiguous(op, "q", q);
  check_rows_contiguous(op, "k", k);
  check_rows_contiguous(op, "v", v);
  const AttentionDims dims{q.size(0), q.size(1), q.size(2), k.size(2), q.size(3)};
  MMS_CHECK(k.shape() == v.shape() && k.size(0) == dims.batch && k.size(1) == dims.heads &&
                k.size(3) == dims.d,
            op, ": q ", shape_str(q.shape()), ", k ", shape_str(k.shape()), ", v ",
            shape_str(v.shape()), " do not agree (need k = v = [B, H, Lk, D])");
  MMS_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype(), op, ": dtypes differ");
  if (key_keep.defined()) {
    MMS_CHECK(key_keep.dim() == 2 && key_keep.size(0) == dims.batch && key_keep.size(1) == dims.lk,
              op, ": key_keep must be [", dims.batch, ", ", dims.lk, "], got ",
              shape_str(key_keep.shape()));
    const DType kd = key_keep.dtype();
    MMS_CHECK(kd == DType::Bool || kd == DType::UInt8 || kd == DType::Int64, op,
              ": key_keep must be bool, uint8 or int64, got ", dtype_name(kd));
  }
  return dims;
}

// key_keep as a dense [B, Lk] byte mask (all ones when absent); any strides.
std::vector<uint8_t> key_mask(const Tensor& key_keep, const AttentionDims& dims) {
  std::vector<uint8_t> mask(dims.batch * dims.lk, 1);
  if (!key_keep.defined()) return mask;
  const int64_t s0 = key_keep.stride(0), s1 = key_keep.stride(1);
  for (int64_t b = 0; b < dims.batch; ++b) {
    for (int64_t j = 0; j < dims.lk; ++j) {
      const int64_t at = b * s0 + j * s1;
      const bool keep = key_keep.dtype() == DType::Int64
                            ? static_cast<const int64_t*>(key_keep.raw_data())[at] != 0
                            : static_cast<const uint8_t*>(key_keep.raw_data())[at] != 0;
      mask[b * dims.lk + j] = keep ? 1 : 0;
    }
  }
  return mask;
}

// S (already scale * Q K^T) -> P in place, row by row; returns each row's lse through
// `lse_row` (may be null). Hidden keys and key-less rows become exact zeros.
// exp runs in T (expf for float: within an ulp, and cheaper than the double exp it
// replaced, which with its conversions was ~3% of the default fine-tuning step on one
// thread); the row sum and lse accumulate in double.
template <typename T>
void masked_softmax_rows(T* s, int64_t lq, int64_t lk, const uint8_t* keep, bool causal, double* lse_row) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  for (int64_t i = 0; i < lq; ++i) {
    T* row = s + i * lk;
    const int64_t visible = causal ? std::min<int64_t>(i + 1, lk) : lk;
    T top = kNegInf;
    for (int64_t j = 0; j < visible; ++j) {
      if (keep[j] && row[j] > top) top = row[j];
    }
    if (top == kNegInf) {  // no key to attend to (or every score -inf)
      for (int64_t j = 0; j < lk; ++j) row[j] = T(0);
      if (lse_row) lse_row[i] = -std::numeric_limits<double>::infinity();
      continue;
    }
    double total = 0.0;
    for (int64_t j = 0; j < lk; ++j) {
      const T p = (j < visible && keep[j]) ? std::exp(row[j] - top) : T(0);
      row[j] = p;
      total += p;
    }
    const T inv = static_cast<T>(1.0 / total);
    for (int64_t j = 0; j < lk; ++j) row[j] *= inv;
    if (lse_row) lse_row[i] = static_cast<double>(top) + std::log(total);
  }
}

// Runs body(bh, scratch) for every (b, h), in parallel when there are several.
template <typename Scratch, typename Body>
void for_each_head(int64_t count, int64_t work, Scratch make_scratch, Body body) {
  if (parallel_worth_it(count, work)) {
    parallel_ranges(count, parallel_threads(), [&](int64_t begin, int64_t end) {
      auto scratch = make_scratch();
      for (int64_t bh = begin; bh < end; ++bh) body(bh, scratch);
    });
  } else {
    auto scratch = make_scratch();
    for (int64_t bh = 0; bh < count; ++bh) body(bh, scratch);
  }
}

// True when attention_avx512.cpp's kernels run float32 heads of these sizes: a head_dim
// they take, a CPU with AVX-512, and our AVX-512 kernels in use (MMS_CPU_GEMM=avx512-eigen
// turns them off with our GEMM, for like-for-like comparisons).
bool avx512_heads(const AttentionDims& n) {
  return attention_avx512::compiled() && attention_avx512::takes(n.d, n.lk) &&
         std::strcmp(gemm::isa_in_use(), "avx512") == 0;
}

template <typename T, typename L>
void attention_typed(const Tensor& q, const Tensor& k, const Tensor& v, const uint8_t* keep_all,
                     bool causal, T scale, Tensor& out, Tensor& lse, const AttentionDims& n) {
  const Heads<const T> qs = read_heads<T>(q), ks = read_heads<T>(k), vs = read_heads<T>(v);
  const Heads<T> os = write_heads<T>(out);
  L* pl = lse.data<L>();
  struct Scratch {
    RowMatrix<T> s;
    std::vector<double> lse;
  };
  const int64_t heads = n.batch * n.heads;
  if constexpr (std::is_same_v<T, float>) {
    if (avx512_heads(n)) {
      struct Floats {
        std::vector<float> scratch;
        std::vector<double> lse;
      };
      auto make_floats = [&] {
        return Floats{std::vector<float>(attention_avx512::scratch_floats(n.lq, n.lk, n.d)), std::vector<double>(n.lq)};
      };
      for_each_head(heads, heads * n.lq * n.lk * n.d, make_floats, [&](int64_t bh, Floats& sc) {
        const attention_avx512::HeadShape shape{n.lq, n.lk, n.d, keep_all + (bh / n.heads) * n.lk, causal, scale};
        attention_avx512::forward(shape, qs.at(bh, n.heads), ks.at(bh, n.heads), vs.at(bh, n.heads),
                                  os.at(bh, n.heads), sc.lse.data(), sc.scratch.data());
        for (int64_t i = 0; i < n.lq; ++i) pl[bh * n.lq + i] = static_cast<L>(sc.lse[i]);
      });
      return;
    }
  }
  auto make = [&] { return Scratch{RowMatrix<T>(n.lq, n.lk), std::vector<double>(n.lq)}; };
  for_each_head(heads, heads * n.lq * n.lk * n.d, make, [&](int64_t bh, Scratch& sc) {
    const int64_t b = bh / n.heads;
    const gemm::RowsAt<T> scores{sc.s.data(), n.lk};
    gemm::serial(qs.at(bh, n.heads), ks.at(bh, n.heads), scores, n.lq, n.lk, n.d, false, true, scale,
                 T(0));  // S = scale Q K^T
    masked_softmax_rows<T>(sc.s.data(), n.lq, n.lk, keep_all + b * n.lk, causal, sc.lse.data());
    gemm::serial(as_const(scores), vs.at(bh, n.heads), os.at(bh, n.heads), n.lq, n.d, n.lk, false, false, T(1),
                 T(0));  // O = P V
    for (int64_t i = 0; i < n.lq; ++i) pl[bh * n.lq + i] = static_cast<L>(sc.lse[i]);
  });
}

template <typename T>
void attention_backward_typed(const Tensor& grad_out, const Tensor& q, const Tensor& k,
                              const Tensor& v, const Tensor& out, const uint8_t* keep_all,
                              bool causal, T scale, Tensor& grad_q, Tensor& grad_k,
                              Tensor& grad_v, const AttentionDims& n) {
  const Heads<const T> gs = read_heads<T>(grad_out), qs = read_heads<T>(q), ks = read_heads<T>(k),
                       vs = read_heads<T>(v), os = read_heads<T>(out);
  const Heads<T> gqs = write_heads<T>(grad_q), gks = write_heads<T>(grad_k), gvs = write_heads<T>(grad_v);
  using Stride = Eigen::OuterStride<>;
  using HeadMap = Eigen::Map<const RowMatrix<T>, Eigen::Unaligned, Stride>;
  struct Scratch {
    RowMatrix<T> p, dp;
    Eigen::Matrix<T, Eigen::Dynamic, 1> row_dot;
  };
  const int64_t heads = n.batch * n.heads;
  if constexpr (std::is_same_v<T, float>) {
    if (avx512_heads(n)) {
      auto make_floats = [&] { return std::vector<float>(attention_avx512::scratch_floats(n.lq, n.lk, n.d)); };
      for_each_head(heads, heads * n.lq * n.lk * n.d, make_floats, [&](int64_t bh, std::vector<float>& scratch) {
        const attention_avx512::HeadShape shape{n.lq, n.lk, n.d, keep_all + (bh / n.heads) * n.lk, causal, scale};
        attention_avx512::backward(shape, gs.at(bh, n.heads), qs.at(bh, n.heads), ks.at(bh, n.heads),
                                   vs.at(bh, n.heads), os.at(bh, n.heads), gqs.at(bh, n.heads),
                                   gks.at(bh, n.heads), gvs.at(bh, n.heads), scratch.data());
      });
      return;
    }
  }
  auto make = [&] {
    return Scratch{RowMatrix<T>(n.lq, n.lk), RowMatrix<T>(n.lq, n.lk),
                   Eigen::Matrix<T, Eigen::Dynamic, 1>(n.lq)};
  };
  for_each_head(heads, heads * n.lq * n.lk * n.d, make, [&](int64_t bh, Scratch& sc) {
    const int64_t b = bh / n.heads;
    const gemm::RowsAt<const T> Q = qs.at(bh, n.heads), K = ks.at(bh, n.heads), V = vs.at(bh, n.heads),
                                dO = gs.at(bh, n.heads), O = os.at(bh, n.heads);
    const gemm::RowsAt<T> P{sc.p.data(), n.lk}, dP{sc.dp.data(), n.lk};
    gemm::serial(Q, K, P, n.lq, n.lk, n.d, false, true, scale, T(0));  // P, recomputed
    masked_softmax_rows<T>(P.data, n.lq, n.lk, keep_all + b * n.lk, causal, nullptr);
    gemm::serial(as_const(P), dO, gvs.at(bh, n.heads), n.lk, n.d, n.lq, true, false, T(1), T(0));  // dV = P^T dO
    gemm::serial(dO, V, dP, n.lq, n.lk, n.d, false, true, T(1), T(0));                             // dP = dO V^T
    sc.row_dot = HeadMap(dO.data, n.lq, n.d, Stride(dO.stride))
                     .cwiseProduct(HeadMap(O.data, n.lq, n.d, Stride(O.stride)))
                     .rowwise()
                     .sum();
    // dS = P * (dP - D), in place in dp; hidden entries have P = 0 and stay 0
    sc.dp = sc.p.cwiseProduct(sc.dp.colwise() - sc.row_dot);
    gemm::serial(as_const(dP), K, gqs.at(bh, n.heads), n.lq, n.d, n.lk, false, false, scale, T(0));  // dQ = scale dS K
    gemm::serial(as_const(dP), Q, gks.at(bh, n.heads), n.lk, n.d, n.lq, true, false, scale, T(0));   // dK = scale dS^T Q
  });
}

void check_output(const char* op, const char* what, const Tensor& t, const Shape& shape,
                  DType dtype) {
  MMS_CHECK(t.defined(), op, ": ", what, " is required");
  check_rows_contiguous(op, what, t);
  MMS_CHECK(t.shape() == shape && t.dtype() == dtype, op, ": ", what, " must be ",
            dtype_name(dtype), " ", shape_str(shape), ", got ", dtype_name(t.dtype()), " ",
            shape_str(t.shape()));
}

}  // namespace

void CpuBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v,
                           const Tensor& key_keep, bool causal, double scale, Tensor& out,
                           Tensor& lse) {
  const char* op = "attention";
  const AttentionDims n = check_attention(op, q, k, v, key_keep);
  check_output(op, "out", out, q.shape(), q.dtype());
  MMS_CHECK(lse.defined() && lse.is_contiguous() &&
                lse.shape() == Shape({n.batch, n.heads, n.lq}) &&
                (lse.dtype() == q.dtype() || lse.dtype() == DType::Float32),
            op, ": lse must be contiguous float32 or ", dtype_name(q.dtype()), " [", n.batch, ", ",
            n.heads, ", ", n.lq, "]");
  if (n.batch * n.heads * n.lq == 0) return;  // no query rows: nothing to write
  const std::vector<uint8_t> keep = key_mask(key_keep, n);
  dispatch_floating(q.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (lse.dtype() == q.dtype()) {
      attention_typed<T, T>(q, k, v, keep.data(), causal, static_cast<T>(scale), out, lse, n);
    } else {
      attention_typed<T, float>(q, k, v, keep.data(), causal, static_cast<T>(scale), out, lse, n);
    }
  });
}

void CpuBackend::attention_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k,
                                    const Tensor& v, const Tensor& out, const Tensor& lse,
                                    const Tensor& key_keep, bool causal, double scale,
                                    Tensor& grad_q, Tensor& grad_k, Tensor& grad_v) {
  const char* op = "attention_backward";
  const AttentionDims n = check_attention(op, q, k, v, key_keep);
  check_output(op, "grad_out", grad_out, q.shape(), q.dtype());
  check_output(op, "out", out, q.shape(), q.dtype());
  check_output(op, "grad_q", grad_q, q.shape(), q.dtype());
  check_output(op, "grad_k", grad_k, k.shape(), q.dtype());
  check_output(op, "grad_v", grad_v, v.shape(), q.dtype());
  const std::vector<uint8_t> keep = key_mask(key_keep, n);
  dispatch_floating(q.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    attention_backward_typed<T>(grad_out, q, k, v, out, keep.data(), causal,
                                static_cast<T>(scale), grad_q, grad_k, grad_v, n);
  });
}

}  // namespace mms::cpu
