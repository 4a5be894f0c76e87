// Error checks for every CUDA runtime and cuBLAS call, used only inside cuda/.
//
// MMS_CUDA_CHECK(call) and MMS_CUBLAS_CHECK(call) report file, line, the call and the
// library's own message through report_cuda_error() (cuda/runtime.h), which the engine
// routes to mms::Error. MMS_CUDA_LAUNCH_CHECK() follows every kernel launch: it catches
// bad launch configurations at once, and in debug builds (MMS_CUDA_DEBUG_SYNC defined,
// or NDEBUG not defined) or with the environment variable MMS_CUDA_DEBUG_SYNC=1 it also
// synchronises, so an illegal address is reported at the op that caused it rather than
// at some later, innocent call. While cuda/profile.h records, it also marks the launch
// site on the timeline.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "cuda/runtime.h"

namespace mms::cuda::detail {
const char* cublas_status_message(cublasStatus_t status);
void check_launch(const char* file, int line, const char* function);
}  // namespace mms::cuda::detail

#define MMS_CUDA_CHECK(call)                                                                     \
  do {                                                                                           \
    const cudaError_t mms_cuda_status_ = (call);                                                 \
    if (mms_cuda_status_ != cudaSuccess)                                                         \
      ::mms::cuda::report_cuda_error(__FILE__, __LINE__, #call,                                  \
                                     cudaGetErrorString(mms_cuda_status_));                      \
  } while (0)

#define MMS_CUBLAS_CHECK(call)                                                                   \
  do {                                                                                           \
    const cublasStatus_t mms_cublas_status_ = (call);                                            \
    if (mms_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                             \
      ::mms::cuda::report_cuda_error(__FILE__, __LINE__, #call,                                  \
                                     ::mms::cuda::detail::cublas_status_message(mms_cublas_status_)); \
  } while (0)

#define MMS_CUDA_LAUNCH_CHECK() ::mms::cuda::detail::check_launch(__FILE__, __LINE__, __func__)

// Checks a kernel's preconditions on the host (sizes, alignment) with a readable message.
#define MMS_CUDA_REQUIRE(cond, message)                                                          \
  do {                                                                                           \
    if (!(cond)) ::mms::cuda::report_cuda_error(__FILE__, __LINE__, #cond, message);             \
  } while (0)
