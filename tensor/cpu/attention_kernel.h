// One attention head in float32 with AVX-512 (attention_avx512.cpp), for head_dim a
// multiple of 16: CpuBackend::attention and attention_backward run it per (batch, head)
// when the CPU has AVX-512 and our AVX-512 kernels are in use (gemm::isa_in_use() ==
// "avx512"; MMS_CPU_GEMM=avx512-eigen turns it off like the GEMM), else Eigen's GEMMs.
//
// Why: the heads of CLIP-like models are small (the default fine-tune's are 17-20
// tokens of 16 dims), and for those Eigen's GEMM spends more time packing and
// dispatching than multiplying. Here a row of 16 head dims is one 512-bit register, so
// every product of a head is a handful of broadcast FMAs per output row, with nothing
// packed but K (and V in the backward) transposed once per head.
//
// Plain C++ like gemm_kernel.h, so the AVX-512 file compiles nothing but the kernels.
#pragma once

#include <cstdint>

#include "tensor/cpu/gemm_kernel.h"  // RowsAt (plain C++)

namespace mms::cpu::attention_avx512 {

// True when the build compiled the kernels (the CPU check is the caller's).
bool compiled();
// True when the kernels take this head: head_dim a multiple of 16 up to 256, at most 1024 keys.
bool takes(int64_t head_dim, int64_t keys);
// Floats of per-thread scratch forward() and backward() need for such a head.
int64_t scratch_floats(int64_t queries, int64_t keys, int64_t head_dim);

// An [L, D] head inside a wider matrix: row i starts at data + i * stride.
using ConstRows = gemm::RowsAt<const float>;
using Rows = gemm::RowsAt<float>;

struct HeadShape {
  int64_t queries, keys, head_dim;
  const uint8_t* keep;  // [keys], nonzero = visible
  bool causal;          // key j hidden from query i when j > i
  float scale;
};

// out = softmax(scale q k^T, masked) v; lse[i] = log sum_j exp(scale q_i . k_j) over the
// visible keys (-inf, with a zero row of out, when there is none).
void forward(const HeadShape& shape, ConstRows q, ConstRows k, ConstRows v, Rows out, double* lse,
             float* scratch);
// dq, dk, dv of sum(grad_out * out), P recomputed from q and k (as the Eigen path does).
void backward(const HeadShape& shape, ConstRows grad_out, ConstRows q, ConstRows k, ConstRows v, ConstRows out,
              Rows grad_q, Rows grad_k, Rows grad_v, float* scratch);

}  // namespace mms::cpu::attention_avx512
