// Matrix multiplication: cuBLAS (the bar every handwritten GEMM is measured against) with
// row-major operands, plus a naive kernel kept as the lesson's starting point.
#pragma once

#include <cstdint>

#include "cuda/common.h"

namespace mms::cuda {

// TF32 tensor cores for float32 GEMMs (10-bit mantissa inputs, fp32 accumulation):
// ~8x the FP32 rate on A100/H100, errors ~1e-3 relative. Off by default so the float32
// parity tests hold; examples turn it on with a flag.
void set_tf32_enabled(bool enabled);
bool tf32_enabled();

// Row-major strided-batched GEMM, for b in [0, batch):
//   c[b] = alpha * op(a[b]) @ op(b[b]) + beta * c[b]
// op(a) is [m, k] (a stored [m, k], or [k, m] when trans_a); op(b) is [k, n] (stored [k, n],
// or [n, k] when trans_b); c is [m, n]. Strides are in elements between batch items; a
// stride of 0 broadcasts one matrix over the batch. beta = 0 never reads c.
void gemm_strided_batched_f32(bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n,
                              int64_t k, float alpha, const float* a, int64_t stride_a,
                              const float* b, int64_t stride_b, float beta, float* c,
                              int64_t stride_c, cudaStream_t stream);

// Mixed precision, the same contract with bf16 operands: a and b hold bfloat16 bit
// patterns (uint16), c is float32; products and sums are float32 (bf16 tensor cores on
// sm_80+). What autocast's GEMMs run (autograd/autocast.h).
void gemm_strided_batched_bf16_f32(bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n,
                                   int64_t k, float alpha, const uint16_t* a, int64_t stride_a,
                                   const uint16_t* b, int64_t stride_b, float beta, float* c,
                                   int64_t stride_c, cudaStream_t stream);

// The same with c stored as bf16 too: float32 accumulation, each result rounded once
// (autocast's bf16 activations). k >= 1.
void gemm_strided_batched_bf16(bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n, int64_t k,
                               float alpha, const uint16_t* a, int64_t stride_a, const uint16_t* b,
                               int64_t stride_b, float beta, uint16_t* c, int64_t stride_c, cudaStream_t stream);

// The same contract with one thread per output element and a serial dot product over k
// straight from global memory: no tiling, no reuse; the starting point of the GEMM lesson.
void gemm_strided_batched_f32_naive(bool trans_a, bool trans_b, int64_t batch, int64_t m,
                                    int64_t n, int64_t k, float alpha, const float* a,
                                    int64_t stride_a, const float* b, int64_t stride_b, float beta,
                                    float* c, int64_t stride_c, cudaStream_t stream);

}  // namespace mms::cuda
