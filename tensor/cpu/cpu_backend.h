// The CPU backend: every kernel of tensor/backend.h for host memory.
//
// The class is declared here and its methods are defined one family per file
// (copy.cpp, random.cpp, dropout.cpp, elementwise.cpp, reduce.cpp, softmax.cpp,
// layer_norm.cpp, gemm.cpp, indexing.cpp, attention.cpp, listmle.cpp, adamw.cpp). This
// header also holds the small helpers every family shares: dtype dispatch and the
// OpenMP "is it worth it" thresholds.
//
// Math kernels are templates on float/double; other dtypes get a clear mms::Error.
// Kernels never throw from inside an OpenMP region (an exception cannot cross it):
// anything that can fail (index bounds, list lengths) is validated before the loop.
#pragma once

#include <cstdint>

#include "tensor/backend.h"
#include "tensor/cpu/parallel.h"

namespace mms::cpu {

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }

  void copy(const Tensor& src, Tensor& dst) override;
  void fill(Tensor& dst, double value) override;
  void arange(Tensor& dst, double start, double step) override;
  void random(RandomKind kind, uint64_t seed, uint64_t offset, double a, double b,
              Tensor& dst) override;
  void dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset, Tensor& out) override;

  void unary(UnaryOp op, const Tensor& x, Tensor& out, double alpha, double beta) override;
  void unary_backward(UnaryOp op, const Tensor& grad_out, const Tensor& x, Tensor& grad_in,
                      double alpha, double beta) override;
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) override;
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out) override;

  void reduce_last(ReduceOp op, const Tensor& x, Tensor& out) override;
  bool sum_rows(const Tensor& x, Tensor& out) override;

  void softmax_last(const Tensor& x, Tensor& out, bool log) override;
  void softmax_last_backward(const Tensor& grad_out, const Tensor& y, Tensor& grad_in,
                             bool log) override;

  void attention_softmax(const Tensor& scores, const Tensor& key_keep, bool causal, Tensor& probs,
                         Tensor& lse) override;
  void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                  Tensor& y, Tensor& mean, Tensor& rstd) override;
  void layer_norm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight,
                           const Tensor& mean, const Tensor& rstd, const Tensor& grad_x_addend, Tensor& grad_x,
                           Tensor& grad_weight, Tensor& grad_bias) override;

  void bmm(const Tensor& a, const Tensor& b, Tensor& out, bool trans_a, bool trans_b,
           double alpha, double beta) override;
  bool linear_epilogue(const Tensor& x, const Tensor& weight, const Tensor& bias, LinearEpilogue epilogue,
                       Tensor& out, Tensor& pre_activation) override;

  void index_select_rows(const Tensor& table, const Tensor& index, Tensor& out) override;
  void index_add_rows(const Tensor& grad, const Tensor& index, Tensor& table_grad) override;
  void gather_last(const Tensor& x, const Tensor& index, Tensor& out) override;
  void scatter_add_last(const Tensor& grad, const Tensor& index, Tensor& out) override;

  void listmle(const Tensor& scores, const Tensor& order, const Tensor& lengths, Tensor& loss,
               Tensor& grad_scores) override;

  void adamw(const std::vector<AdamWTensor>& tensors, double lr, double beta1, double beta2,
             double eps, int64_t step) override;
  void adamw_device_scalars(const std::vector<AdamWTensor>& tensors, const Tensor& lr, double lr_scale,
                            double beta1, double beta2, double eps, const Tensor& step) override;
  void sum_of_squares_into(const std::vector<Tensor>& tensors, Tensor& out) override;

  bool attention_reads_views() const override { return true; }
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_keep,
                 bool causal, double scale, Tensor& out, Tensor& lse) override;
  void attention_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k,
                          const Tensor& v, const Tensor& out, const Tensor& lse,
                          const Tensor& key_keep, bool causal, double scale, Tensor& grad_q,
                          Tensor& grad_k, Tensor& grad_v) override;

 private:
  // bfloat16 -> a contiguous float32 copy: the CPU computes bf16 elementwise ops in float32.
  Tensor widened(const Tensor& t);
};

// ---- dtype dispatch ------------------------------------------------------------------
// A type tag: `body(Tag<float>{})` lets a generic lambda recover T as
// `typename decltype(tag)::type` without constructing a T.
template <typename T>
struct Tag {
  using type = T;
};

[[noreturn]] void unsupported_dtype(const char* op, DType dtype);

// Calls body(Tag<float>) or body(Tag<double>); any other dtype is an error naming op.
template <typename Body>
void dispatch_floating(DType dtype, const char* op, Body&& body) {
  switch (dtype) {
    case DType::Float32: body(Tag<float>{}); return;
    case DType::Float64: body(Tag<double>{}); return;
    default: unsupported_dtype(op, dtype);
  }
}

// Floating plus the integer types that have arithmetic (not bool, not the 16-bit floats).
template <typename Body>
void dispatch_numeric(DType dtype, const char* op, Body&& body) {
  switch (dtype) {
    case DType::Float32: body(Tag<float>{}); return;
    case DType::Float64: body(Tag<double>{}); return;
    case DType::Int64: body(Tag<int64_t>{}); return;
    case DType::Int32: body(Tag<int32_t>{}); return;
    case DType::UInt8: body(Tag<uint8_t>{}); return;
    default: unsupported_dtype(op, dtype);
  }
}

// All eight dtypes (copies, fills, selects: no arithmetic on the values).
template <typename Body>
void dispatch_all(DType dtype, const char* op, Body&& body) {
  switch (dtype) {
    case DType::Float32: body(Tag<float>{}); return;
    case DType::Float64: body(Tag<double>{}); return;
    case DType::BFloat16: body(Tag<BFloat16>{}); return;
    case DType::Float16: body(Tag<Float16>{}); return;
    case DType::Int64: body(Tag<int64_t>{}); return;
    case DType::Int32: body(Tag<int32_t>{}); return;
    case DType::UInt8: body(Tag<uint8_t>{}); return;
    case DType::Bool: body(Tag<bool>{}); return;
  }
  unsupported_dtype(op, dtype);
}

// ---- when to use threads ---------------------------------------------------------------
// Below ~32K elements of simple work handing parts to the pool (a few microseconds)
// costs more than it saves on 2-16 cores.
constexpr int64_t kParallelGrain = 1 << 15;

// True when a loop over `rows` independent rows touching `elements` values in total
// should run on several threads (and we are not already inside a parallel part).
bool parallel_worth_it(int64_t rows, int64_t elements);

// body(begin, end) over [0, rows): on the pool (tensor/cpu/parallel.h), one range per
// thread, when parallel_worth_it(rows, elements); otherwise once, body(0, rows). A
// kernel's per-thread scratch is made inside body, once per range.
template <typename Body>
void parallel_rows(int64_t rows, int64_t elements, Body&& body) {
  if (parallel_worth_it(rows, elements)) {
    parallel_ranges(rows, parallel_threads(), body);
  } else {
    body(int64_t{0}, rows);
  }
}

// ---- the SIMD builds (gemm_avx2.cpp, gemm_avx512.cpp, activation_avx2.cpp) -----------------
// True when this CPU runs AVX2 and FMA. Defined in a baseline-ISA file, so it is safe to
// call anywhere.
bool cpu_has_avx2_fma();
// True when this CPU runs the AVX-512 subsets the AVX-512 GEMM build uses (F and DQ,
// plus AVX2 and FMA).
bool cpu_has_avx512();

// Requires a contiguous tensor (kernels that index with plain row-major arithmetic).
void check_contiguous(const char* op, const char* what, const Tensor& t);

}  // namespace mms::cpu
