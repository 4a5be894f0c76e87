// The engine's CUDA runtime glue: device detection, the single stream, transfers,
// error reporting and the launch checks behind cuda/check.h.
#include "cuda/runtime.h"

#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>

#include "cuda/check.h"
#include "cuda/graph.h"
#include "cuda/profile.h"
#include "cuda/staging.h"

namespace mms::cuda {

namespace {

[[noreturn]] void default_error_handler(const std::string& message) {
  throw std::runtime_error(message);
}

ErrorHandler g_error_handler = default_error_handler;

}  // namespace

const char* scalar_type_name(ScalarType type) {
  switch (type) {
    case ScalarType::Float32: return "float32";
    case ScalarType::Float64: return "float64";
    case ScalarType::BFloat16: return "bfloat16";
    case ScalarType::Float16: return "float16";
    case ScalarType::Int64: return "int64";
    case ScalarType::Int32: return "int32";
    case ScalarType::UInt8: return "uint8";
    case ScalarType::Bool: return "bool";
  }
  return "unknown";
}

size_t scalar_type_size(ScalarType type) {
  switch (type) {
    case ScalarType::Float64:
    case ScalarType::Int64: return 8;
    case ScalarType::Float32:
    case ScalarType::Int32: return 4;
    case ScalarType::BFloat16:
    case ScalarType::Float16: return 2;
    case ScalarType::UInt8:
    case ScalarType::Bool: return 1;
  }
  return 0;
}

void set_error_handler(ErrorHandler handler) {
  g_error_handler = handler ? handler : default_error_handler;
}

void report_cuda_error(const char* file, int line, const char* call, const char* library_message) {
  std::string message = "CUDA error: ";
  message += library_message ? library_message : "(no message)";
  message += " in ";
  message += call;
  message += " at ";
  message += file;
  message += ":";
  message += std::to_string(line);
  g_error_handler(message);
  throw std::runtime_error(message);  // a handler must not return; make sure of it
}

int device_count() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky "no driver / no device" error
      return 0;
    }
    return n;
  }();
  return count;
}

cudaStream_t stream() {
  static cudaStream_t the_stream = [] {
    MMS_CUDA_REQUIRE(device_count() > 0, "no CUDA device is available");
    cudaStream_t created = nullptr;
    MMS_CUDA_CHECK(cudaStreamCreateWithFlags(&created, cudaStreamNonBlocking));
    return created;
  }();
  return the_stream;
}

void synchronize() {
  note_host_sync();
  MMS_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void memcpy(void* dst, const void* src, size_t nbytes, CopyKind kind) {
  if (nbytes == 0) return;
  switch (kind) {
    case CopyKind::HostToDevice:  // staged through pinned memory: no wait (cuda/staging.h)
      upload_async(dst, src, nbytes);
      return;
    case CopyKind::DeviceToHost:  // the caller reads the bytes next: wait for them
      MMS_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, stream()));
      synchronize();
      return;
    case CopyKind::DeviceToDevice:
      MMS_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, stream()));
      return;
  }
}

bool debug_sync_enabled() {
  // A sync (or a host read) on a capturing stream would invalidate the capture: the
  // debug checks stand down while a graph is being recorded (cuda/graph.h).
  if (capturing()) return false;
#if defined(MMS_CUDA_DEBUG_SYNC) || !defined(NDEBUG)
  return true;
#else
  static const bool from_environment = [] {
    const char* value = std::getenv("MMS_CUDA_DEBUG_SYNC");
    return value != nullptr && value[0] != '\0' && value[0] != '0';
  }();
  return from_environment;
#endif
}

DeviceInfo device_info() {
  DeviceInfo info;
  if (device_count() == 0) return info;
  int device = 0;
  MMS_CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp properties{};
  MMS_CUDA_CHECK(cudaGetDeviceProperties(&properties, device));
  info.name = properties.name;
  info.sm_count = properties.multiProcessorCount;
  info.compute_major = properties.major;
  info.compute_minor = properties.minor;
  info.total_memory = properties.totalGlobalMem;
  return info;
}

namespace detail {

const char* cublas_status_message(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED (cuBLAS could not start)";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED (out of device memory)";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE (bad size, stride or leading dimension)";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH (feature not supported by this GPU)";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED (kernel failed to run)";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "unknown cuBLAS status";
}

void check_launch(const char* file, int line, const char* function) {
  const cudaError_t launch = cudaGetLastError();
  if (launch != cudaSuccess)
    report_cuda_error(file, line, "kernel launch", cudaGetErrorString(launch));
  if (profile::recording()) profile::mark_kernel(function, line);  // after the check: an error names its launch
  if (debug_sync_enabled()) {
    const cudaError_t run = cudaStreamSynchronize(stream());
    if (run != cudaSuccess)
      report_cuda_error(file, line, "kernel execution (debug sync)", cudaGetErrorString(run));
  }
}

}  // namespace detail

}  // namespace mms::cuda
