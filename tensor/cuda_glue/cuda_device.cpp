// Device discovery, memory and transfers for CUDA builds (the CPU-only build's versions
// live in tensor/backend.cpp), and the shared checks of the CUDA glue.
#include <cstdlib>
#include <cstring>
#include <string>

#include "cuda/indexing.h"
#include "cuda/memory.h"
#include "cuda/runtime.h"
#include "cuda/staging.h"
#include "tensor/cuda_glue/cuda_glue.h"

namespace mms {

namespace {

[[noreturn]] void throw_engine_error(const std::string& message) { throw Error(message); }

void check_device_index(const char* what, Device device) {
  MMS_CHECK(cuda_available(), what, ": no CUDA device is available (", device.str(), ")");
  MMS_CHECK(device.index == 0, what, ": ", device.str(),
            " requested, but this build drives only cuda:0 (", cuda_device_count(),
            " device(s) present)");
}

}  // namespace

bool cuda_available() { return cuda::device_count() > 0; }

int cuda_device_count() { return cuda::device_count(); }

Backend& cuda_backend() {
  MMS_CHECK(cuda_available(), "cuda_backend: this build has CUDA but no CUDA device was found at "
                              "run time (driver missing or no GPU visible)");
  static CudaBackend backend;
  return backend;
}

CudaBackend::CudaBackend() { cuda::set_error_handler(throw_engine_error); }

void* device_allocate(size_t nbytes, Device device) {
  if (device.is_cpu()) {
    void* data = std::malloc(nbytes == 0 ? 1 : nbytes);
    MMS_CHECK(data != nullptr, "allocate: out of host memory asking for ", nbytes, " bytes");
    return data;
  }
  check_device_index("allocate", device);
  cuda::set_error_handler(throw_engine_error);
  return cuda::pool_allocate(nbytes);
}

void device_deallocate(void* pointer, Device device) {
  if (device.is_cpu()) {
    std::free(pointer);
    return;
  }
  cuda::pool_free(pointer);
}

void device_memcpy(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  if (nbytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, nbytes);
    return;
  }
  if (dst_device.is_cuda()) check_device_index("device_memcpy", dst_device);
  if (src_device.is_cuda()) check_device_index("device_memcpy", src_device);
  cuda::set_error_handler(throw_engine_error);
  const cuda::CopyKind kind = src_device.is_cpu()   ? cuda::CopyKind::HostToDevice
                              : dst_device.is_cpu() ? cuda::CopyKind::DeviceToHost
                                                    : cuda::CopyKind::DeviceToDevice;
  cuda::memcpy(dst, src, nbytes, kind);
}

void device_synchronize(Device device) {
  if (device.is_cpu() || !cuda_available()) return;
  cuda::synchronize();
}

int64_t device_sync_count() { return cuda::host_sync_count(); }

namespace cuda_glue {

static_assert(static_cast<int>(DType::Bool) == static_cast<int>(cuda::ScalarType::Bool) &&
                  static_cast<int>(DType::Int64) == static_cast<int>(cuda::ScalarType::Int64) &&
                  static_cast<int>(DType::BFloat16) == static_cast<int>(cuda::ScalarType::BFloat16),
              "cuda::ScalarType must list the dtypes in mms::DType's order");

cuda::ScalarType scalar_type(DType dtype) { return static_cast<cuda::ScalarType>(dtype); }

void check_cuda(const char* op, const char* name, const Tensor& t) {
  MMS_CHECK(t.defined(), op, ": ", name, " is undefined");
  MMS_CHECK(t.device().is_cuda(), op, ": ", name, " ", shape_str(t.shape()), " is on ",
            t.device().str(), ", expected a CUDA tensor");
}

void check_f32(const char* op, const char* name, const Tensor& t) {
  check_cuda(op, name, t);
  MMS_CHECK(t.dtype() == DType::Float32, op, ": the CUDA backend computes in float32, but ", name,
            " ", shape_str(t.shape()), " is ", dtype_name(t.dtype()));
}

void check_contiguous(const char* op, const char* name, const Tensor& t) {
  MMS_CHECK(t.is_contiguous(), op, ": ", name, " ", shape_str(t.shape()),
            " must be contiguous for the CUDA kernel");
}

void check_shape(const char* op, const char* name, const Tensor& t, const Shape& expected) {
  MMS_CHECK(t.shape() == expected, op, ": ", name, " has shape ", shape_str(t.shape()),
            ", expected ", shape_str(expected));
}

std::vector<cuda::StridedLayout> joint_layouts(const char* op,
                                               std::initializer_list<const Tensor*> tensors) {
  const Tensor& first = **tensors.begin();
  std::vector<const int64_t*> strides;
  for (const Tensor* t : tensors) {
    MMS_CHECK(t->shape() == first.shape(), op, ": operand shapes ", shape_str(t->shape()), " and ",
              shape_str(first.shape()), " differ (dispatch should have expanded them)");
    strides.push_back(t->strides().data());
  }
  std::vector<cuda::StridedLayout> layouts(tensors.size());
  const bool ok = cuda::coalesce_layouts(static_cast<int>(first.dim()), first.shape().data(),
                                         strides.data(), static_cast<int>(tensors.size()),
                                         layouts.data());
  MMS_CHECK(ok, op, ": shape ", shape_str(first.shape()), " keeps more than ", cuda::kMaxDims,
            " dims after merging; make an operand contiguous first");
  return layouts;
}

void check_indices(const char* op) {
  if (!cuda::debug_sync_enabled()) return;
  const int64_t bad = cuda::take_bad_index_count();
  MMS_CHECK(bad == 0, op, ": ", bad, " index value(s) out of range (those rows were skipped)");
}

float* f32_or_null(const Tensor& t) { return t.defined() ? static_cast<float*>(t.raw_data()) : nullptr; }

// Key-padding masks arrive as bool, uint8 or int64; the kernels read one byte per key.
Tensor key_keep_bytes(const char* op, const Tensor& key_keep, int64_t batch, int64_t key_len) {
  if (!key_keep.defined()) return key_keep;
  check_cuda(op, "key_keep", key_keep);
  check_shape(op, "key_keep", key_keep, {batch, key_len});
  if ((key_keep.dtype() == DType::Bool || key_keep.dtype() == DType::UInt8) && key_keep.is_contiguous())
    return key_keep;
  MMS_CHECK(key_keep.dtype() == DType::Bool || key_keep.dtype() == DType::UInt8 ||
                key_keep.dtype() == DType::Int64 || key_keep.dtype() == DType::Int32,
            op, ": key_keep must be bool, uint8, int32 or int64, got ", dtype_name(key_keep.dtype()));
  Tensor bytes = empty(key_keep.shape(), DType::Bool, key_keep.device());  // nonzero -> true
  cuda_backend().copy(key_keep, bytes);
  return bytes;
}

}  // namespace cuda_glue

}  // namespace mms
