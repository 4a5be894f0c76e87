// gemm.cu: batched row-major GEMM through cuBLAS, and a naive kernel.
//
// Shapes: c[batch, m, n] = alpha * op(a)[batch, m, k] @ op(b)[batch, k, n] + beta * c.
//
// Row-major trick: cuBLAS is column-major, and a row-major matrix read column-major is
// its transpose. So we ask cuBLAS for c^T = op(b)^T op(a)^T, an [n, m] column-major
// product whose memory is exactly row-major c, passing b first and a second with
// leading dimensions equal to the stored row lengths. No copies, no transposes.
//
// Floor: compute bound at ViT sizes: 2*m*n*k FLOPs. [400, 768] x [768, 3072] is 1.9
// GFLOP: ~30 us at H100 FP32 (~60 TFLOP/s dense), ~4 us with TF32 tensor cores.
// The naive kernel re-reads a and b from global memory for every output: it is bound by
// L2 bandwidth at a few percent of peak, which is why GEMMs tile into shared memory.
//
// Mixed precision (gemm_strided_batched_bf16_f32, autocast's GEMM): a and b bf16, c
// float32, float32 accumulation, through cublasGemmStridedBatchedEx. Same shapes and
// row-major trick. Floor: the bf16 tensor-core peak (H100 SXM ~990 TFLOP/s dense; the
// [400, 768] x [768, 3072] GEMM above is ~2 us there) for large GEMMs; the small ones of
// a fine-tuning step are bound by launch overhead and by reading the operands (half the
// bytes of float32) long before that.
#include <climits>

#include "cuda/check.h"
#include "cuda/device_utils.cuh"
#include "cuda/gemm.h"
#include "cuda/memory.h"

namespace mms::cuda {

namespace {

bool g_tf32 = false;

// One handle for the process with a workspace from our pool, so cuBLAS never allocates
// inside a training step (nor adds its own allocations to a captured graph).
// cublasSetStream resets the handle's workspace to cuBLAS's default, so binding the
// stream always goes through bind_stream, which sets ours again.
constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // what NVIDIA suggests for Hopper

void* workspace() {
  static void* the_workspace = pool_allocate(kWorkspaceBytes);
  return the_workspace;
}

cublasHandle_t handle() {
  static cublasHandle_t the_handle = [] {
    cublasHandle_t created = nullptr;
    MMS_CUBLAS_CHECK(cublasCreate(&created));
    return created;
  }();
  return the_handle;
}

void bind_stream(cublasHandle_t blas, cudaStream_t stream) {
  MMS_CUBLAS_CHECK(cublasSetStream(blas, stream));
  MMS_CUBLAS_CHECK(cublasSetWorkspace(blas, workspace(), kWorkspaceBytes));
}

__global__ void gemm_naive_kernel(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                                  float alpha, const float* __restrict__ a, int64_t stride_a,
                                  const float* __restrict__ b, int64_t stride_b, float beta,
                                  float* __restrict__ c, int64_t stride_c) {
  const int64_t col = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t row = blockIdx.y * int64_t(blockDim.y) + threadIdx.y;
  const int64_t item = blockIdx.z;
  if (row >= m || col >= n) return;
  const float* a_item = a + item * stride_a;
  const float* b_item = b + item * stride_b;
  float acc = 0.0f;
  for (int64_t p = 0; p < k; ++p) {
    const float a_value = trans_a ? a_item[p * m + row] : a_item[row * k + p];
    const float b_value = trans_b ? b_item[col * k + p] : b_item[p * n + col];
    acc += a_value * b_value;
  }
  float* out = c + item * stride_c + row * n + col;
  *out = beta == 0.0f ? alpha * acc : alpha * acc + beta * *out;
}

// The bf16-operand GEMM into c of c_type (float32, or bf16 rounded once); k >= 1.
void gemm_bf16_operands(bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n, int64_t k, float alpha,
                        const uint16_t* a, int64_t stride_a, const uint16_t* b, int64_t stride_b, float beta, void* c,
                        cudaDataType_t c_type, int64_t stride_c, cudaStream_t stream) {
  cublasHandle_t blas = handle();
  bind_stream(blas, stream);
  // The math mode only concerns float32 inputs (TF32 or not); bf16 inputs use the
  // tensor cores in either mode. Set it anyway so this call does not depend on the last.
  MMS_CUBLAS_CHECK(cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH));
  const int lda = int(trans_a ? m : k);  // stored row length of a
  const int ldb = int(trans_b ? k : n);  // stored row length of b
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  // Column-major view: c^T [n, m] = op(b)^T [n, k] @ op(a)^T [k, m] (see the top of the file).
  MMS_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      blas, op_b, op_a, int(n), int(m), int(k), &alpha, b, CUDA_R_16BF, ldb, stride_b, a, CUDA_R_16BF,
      lda, stride_a, &beta, c, c_type, int(n), stride_c, int(batch), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  // the caller's launch check marks the call site, so profiles tell the two outputs apart
}

}  // namespace

void set_tf32_enabled(bool enabled) { g_tf32 = enabled; }
bool tf32_enabled() { return g_tf32; }

void gemm_strided_batched_f32(bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n,
                              int64_t k, float alpha, const float* a, int64_t stride_a,
                              const float* b, int64_t stride_b, float beta, float* c,
                              int64_t stride_c, cudaStream_t stream) {
  if (batch == 0 || m == 0 || n == 0) return;
  MMS_CUDA_REQUIRE(batch <= INT_MAX && m <= INT_MAX && n <= INT_MAX && k <= INT_MAX,
                   "gemm: a dimension exceeds cuBLAS's 32-bit sizes");
  cublasHandle_t blas = handle();
  bind_stream(blas, stream);
  MMS_CUBLAS_CHECK(cublasSetMathMode(blas, g_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  if (k == 0) {  // an empty sum: c = beta * c (cuBLAS rejects k = 0 leading dimensions)
    gemm_strided_batched_f32_naive(trans_a, trans_b, batch, m, n, k, alpha, a, stride_a, b,
                                   stride_b, beta, c, stride_c, stream);
    return;
  }
  const int lda = int(trans_a ? m : k);  // stored row length of a
  const int ldb = int(trans_b ? k : n);  // stored row length of b
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  MMS_CUBLAS_CHECK(cublasSgemmStridedBatched(blas, op_b, op_a, int(n), int(m), int(k), &alpha, b, ldb,
                                             stride_b, a, lda, stride_a, &beta, c, int(n), stride_c,
                                             int(batch)));
  MMS_CUDA_LAUNCH_CHECK();
}

// c[b] (float32, [m, n]) = alpha * op(a[b]) @ op(b[b]) + beta * c[b], with op(a) [m, k]
// and op(b) [k, n] stored as bf16. Each product of two bf16 values is exact in float32,
// and cuBLAS sums them in float32 (CUBLAS_COMPUTE_32F) on the bf16 tensor cores, so the
// result equals a float32 GEMM of the bf16-rounded inputs up to summation order.
void gemm_strided_batched_bf16_f32(bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n,
                                   int64_t k, float alpha, const uint16_t* a, int64_t stride_a,
                                   const uint16_t* b, int64_t stride_b, float beta, float* c,
                                   int64_t stride_c, cudaStream_t stream) {
  if (batch == 0 || m == 0 || n == 0) return;
  MMS_CUDA_REQUIRE(batch <= INT_MAX && m <= INT_MAX && n <= INT_MAX && k <= INT_MAX,
                   "gemm_bf16: a dimension exceeds cuBLAS's 32-bit sizes");
  if (k == 0) {  // an empty sum: c = beta * c; the naive kernel never reads a or b then
    gemm_strided_batched_f32_naive(trans_a, trans_b, batch, m, n, k, alpha, nullptr, 0, nullptr, 0,
                                   beta, c, stride_c, stream);
    return;
  }
  gemm_bf16_operands(trans_a, trans_b, batch, m, n, k, alpha, a, stride_a, b, stride_b, beta, c, CUDA_R_32F,
                     stride_c, stream);
  MMS_CUDA_LAUNCH_CHECK();
}

// The same products and float32 sums with c stored as bf16: cuBLAS rounds each result
// once in its epilogue (autocast's bf16 activations and their gradients). beta reads c
// back as bf16. k >= 1 (ops fill an empty product themselves).
void gemm_strided_batched_bf16(bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n, int64_t k,
                               float alpha, const uint16_t* a, int64_t stride_a, const uint16_t* b,
                               int64_t stride_b, float beta, uint16_t* c, int64_t stride_c, cudaStream_t stream) {
  if (batch == 0 || m == 0 || n == 0) return;
  MMS_CUDA_REQUIRE(batch <= INT_MAX && m <= INT_MAX && n <= INT_MAX && k <= INT_MAX,
                   "gemm_bf16: a dimension exceeds cuBLAS's 32-bit sizes");
  MMS_CUDA_REQUIRE(k > 0, "gemm_bf16: k = 0 (an empty product) is the caller's to fill");
  gemm_bf16_operands(trans_a, trans_b, batch, m, n, k, alpha, a, stride_a, b, stride_b, beta, c, CUDA_R_16BF,
                     stride_c, stream);
  MMS_CUDA_LAUNCH_CHECK();
}

void gemm_strided_batched_f32_naive(bool trans_a, bool trans_b, int64_t batch, int64_t m,
                                    int64_t n, int64_t k, float alpha, const float* a,
                                    int64_t stride_a, const float* b, int64_t stride_b, float beta,
                                    float* c, int64_t stride_c, cudaStream_t stream) {
  if (batch == 0 || m == 0 || n == 0) return;
  MMS_CUDA_REQUIRE(batch <= 65535 && ceil_div(m, 16) <= 65535, "gemm_naive: grid too large");
  const dim3 block(16, 16);
  const dim3 grid(unsigned(ceil_div(n, 16)), unsigned(ceil_div(m, 16)), unsigned(batch));
  gemm_naive_kernel<<<grid, block, 0, stream>>>(trans_a, trans_b, m, n, k, alpha, a, stride_a, b,
                                                stride_b, beta, c, stride_c);
  MMS_CUDA_LAUNCH_CHECK();
}

}  // namespace mms::cuda
