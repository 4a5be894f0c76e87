#include "peak_gemm.h"

#ifdef MMS_WITH_CUDA
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "tensor/backend.h"
#include "tensor/error.h"

namespace mmsbench {
double measure_bf16_gemm_tflops() {
  if (!mms::cuda_available()) return -1.0;
  const int n = 8192;
  const size_t bytes = static_cast<size_t>(n) * n * sizeof(__nv_bfloat16);
  void *a = nullptr, *b = nullptr, *c = nullptr;
  MMS_CHECK(cudaMalloc(&a, bytes) == cudaSuccess && cudaMalloc(&b, bytes) == cudaSuccess &&
                cudaMalloc(&c, bytes) == cudaSuccess,
            "peak_gemm: cudaMalloc of 3 x ", bytes, " bytes failed");
  // Non-zero data: tensor cores draw less power on zeros, which would flatter the peak.
  cudaMemset(a, 0x3c, bytes);
  cudaMemset(b, 0x3c, bytes);
  cublasHandle_t handle;
  cublasCreate(&handle);
  const float alpha = 1.0f, beta = 0.0f;
  auto gemm = [&] {
    cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, a, CUDA_R_16BF, n, b, CUDA_R_16BF, n, &beta, c,
                 CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  };
  for (int i = 0; i < 3; ++i) gemm();
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  const int repeats = 10;
  cudaEventRecord(start);
  for (int i = 0; i < repeats; ++i) gemm();
  cudaEventRecord(stop);
  cudaEventSynchronize(stop);
  float ms = 0;
  cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cublasDestroy(handle);
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
  return 2.0 * n * double(n) * n * repeats / (ms * 1e-3) / 1e12;
}
}  // namespace mmsbench
#else
namespace mmsbench {
double measure_bf16_gemm_tflops() { return -1.0; }
}  // namespace mmsbench
#endif
