// The CUDA runtime as the rest of mmscale sees it: whether a device exists, the one
// stream every kernel runs on, transfers, synchronisation and error reporting.
//
// One stream: every kernel, copy and stream-ordered allocation of the engine is queued
// on stream(), so the order of calls is the order of execution and a pool block freed
// on the stream can be reused by the next op without a device-wide sync.
#pragma once

#include <cstddef>
#include <string>

#include "cuda/common.h"

namespace mms::cuda {

// Number of usable devices; 0 (never an exception) when there is no driver or device.
int device_count();
// The engine's stream (created on first use, non-blocking with respect to stream 0).
cudaStream_t stream();
// Waits until all work queued on stream() is done (and reports any asynchronous error).
void synchronize();

enum class CopyKind { HostToDevice, DeviceToHost, DeviceToDevice };
// Copies nbytes on stream(). Host -> device returns once the bytes are staged (the caller
// may reuse its buffer at once; the device sees them in stream order, without the host
// waiting: cuda/staging.h). Device -> host returns once the bytes have arrived (a wait).
// Device -> device is queued and returns.
void memcpy(void* dst, const void* src, size_t nbytes, CopyKind kind);

// Where CUDA errors go. Default: throw std::runtime_error. The engine installs a handler
// that throws mms::Error, so callers see the engine's one exception type. The handler
// must not return.
using ErrorHandler = void (*)(const std::string& message);
void set_error_handler(ErrorHandler handler);
[[noreturn]] void report_cuda_error(const char* file, int line, const char* call,
                                    const char* library_message);

// True in debug builds, or when the environment sets MMS_CUDA_DEBUG_SYNC=1; false while
// this thread is capturing a CUDA graph (a sync would break the capture).
bool debug_sync_enabled();

// Name and peak numbers of the current device, for benchmarks and logs.
struct DeviceInfo {
  std::string name;
  int sm_count = 0;
  int compute_major = 0, compute_minor = 0;
  size_t total_memory = 0;
};
DeviceInfo device_info();

}  // namespace mms::cuda
