// The linear layer through cuBLASLt, with the bias (and the tanh-approximate GELU)
// applied in the GEMM's epilogue instead of in separate passes; and the backward's
// weight-gradient GEMM with the bias gradient summed in its epilogue.
//
//   Bias:          y = x W^T + b
//   GeluTanhBias:  y = gelu_tanh(x W^T + b), and optionally h = x W^T + b (the backward's input)
//   BiasGradient:  dW = dy^T x and db = sum of dy over rows, one GEMM (linear_weight_grad_lt)
//
// Shapes (row-major, contiguous): x [m, k], W [n, k] (nn.Linear's [out, in]), b [n]
// float32, y (and h) [m, n] float32. Inputs float32 (TF32 tensor cores when
// tf32_enabled(), cuda/gemm.h) or bf16 (autocast's mixed GEMM: float32 accumulation,
// bias and output).
//
// Why an epilogue pays: without one, the bias is its own pass over the [m, n] output
// (ops::linear pre-fills y with b, then the GEMM reads y back with beta = 1: a write and
// a read of m*n*4 bytes), and an activation is another read and write. The epilogue adds
// b[col] (and applies GELU) to the accumulator while it is still in registers, before
// the one store. The floor stays the GEMM's, 2*m*n*k FLOPs / peak; what the epilogue
// removes is memory-bound. At the ViT-B/32 MLP up-projection, B = 32 (m = 50*32 = 1600,
// n = 3072, k = 768; estimates from H100 peaks, not measurements): the GEMM is 7.5
// GFLOP, ~145 us at the measured 51.6 TFLOP/s FP32, ~18 us in TF32, ~8 us in bf16; the
// bias pass moves 2 * 19.7 MB, ~13 us at 3 TB/s, plus a launch: ~10% of the FP32 GEMM,
// ~70% of the TF32 one, more than the bf16 one. A separate GELU is another 13 us.
//
// cuBLASLt's GELU is the tanh approximation, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
// (HF's "gelu_new" / "gelu_pytorch_tanh"). It offers neither the exact erf GELU nor
// OpenAI CLIP's quick_gelu, x * sigmoid(1.702 x): models with those activations get the
// bias epilogue only, and their activation stays a separate elementwise kernel.
//
// The bias gradient (CUBLASLT_EPILOGUE_BGRADB): db[o] = sum_r dy[r, o] is a reduction of
// the very operand the weight-gradient GEMM dW = dy^T x streams through its tiles over
// the same r. Separately it is one more launch and one more read of dy ([rows, out]: at
// the text tower's fc1, B = 32, 9856 x 2048 bf16 = 40 MB, ~13 us at 3 TB/s); in the
// epilogue it is neither.
#pragma once

#include <cstdint>

#include "cuda/common.h"

namespace mms::cuda {

// Whether the engine routes linear layers through cuBLASLt. On unless the environment
// sets MMS_CUBLASLT=0 (read once, at the first call); the setter is for tests and A/B
// benchmarks in one process.
bool cublaslt_enabled();
void set_cublaslt_enabled(bool enabled);

enum class LtEpilogue : uint8_t {
  Bias,          // y = x W^T + b
  GeluTanhBias,  // y = gelu_tanh(x W^T + b); pre_activation (optional) = x W^T + b
  BiasGradient,  // the weight-gradient GEMM: dW = dy^T x, db = sum of dy over rows
};

// y = epilogue(x @ weight^T + bias), as above. pre_activation may be null; when it is
// given (GeluTanhBias only) n must be a multiple of 8 (cuBLASLt's rule for the GELU
// input matrix). Returns false, having queued nothing, when cuBLASLt offers no
// algorithm for the case (or m, n or k is 0, or pre_activation's n is not a multiple
// of 8): the caller then runs the plain GEMM and separate passes. Any other failure is
// reported as an error. Algorithms are chosen by cuBLASLt's heuristic once per shape,
// precision, epilogue and pointer alignment, and cached.
bool linear_lt_f32(LtEpilogue epilogue, int64_t m, int64_t n, int64_t k, const float* x,
                   const float* weight, const float* bias, float* y, float* pre_activation,
                   cudaStream_t stream);
// The same with bf16 x and weight (bfloat16 bit patterns); bias, y and pre_activation
// float32; products and sums in float32.
bool linear_lt_bf16_f32(LtEpilogue epilogue, int64_t m, int64_t n, int64_t k, const uint16_t* x,
                        const uint16_t* weight, const float* bias, float* y, float* pre_activation,
                        cudaStream_t stream);

// The same with everything bf16: x, weight, bias, y and pre_activation (autocast's bf16
// activations). The bias is added to the float32 accumulator and each output rounded
// once; the GELU's input matrix is stored in bf16 too.
bool linear_lt_bf16(LtEpilogue epilogue, int64_t m, int64_t n, int64_t k, const uint16_t* x, const uint16_t* weight,
                    const uint16_t* bias, uint16_t* y, uint16_t* pre_activation, cudaStream_t stream);

// The linear layer's weight and bias gradients, one GEMM: for dy [m, n] (the output's
// gradient, rows x out_features) and x [m, k], both row-major and contiguous,
//   grad_weight [n, k] = dy^T x,   grad_bias [n] = sum over the m rows of dy,
// both float32 and overwritten (not accumulated). Float32 operands (TF32 when
// tf32_enabled()) or bf16 ones (float32 products, sums and outputs). Returns false,
// having queued nothing, where cuBLASLt has no algorithm for the case (or m, n or k is
// 0): the caller then runs the GEMM and a separate reduction.
bool linear_weight_grad_lt_f32(int64_t m, int64_t n, int64_t k, const float* grad_out, const float* x,
                               float* grad_weight, float* grad_bias, cudaStream_t stream);
bool linear_weight_grad_lt_bf16(int64_t m, int64_t n, int64_t k, const uint16_t* grad_out, const uint16_t* x,
                                float* grad_weight, float* grad_bias, cudaStream_t stream);

}  // namespace mms::cuda
