// The CPU backend's single instance and the helpers shared by its kernel files.
#include "tensor/cpu/cpu_backend.h"

namespace mms {

// The registry (tensor/backend.cpp) hands this object out for Device::cpu().
Backend& cpu_backend() {
  static cpu::CpuBackend instance;
  return instance;
}

namespace cpu {

void unsupported_dtype(const char* op, DType dtype) {
  fail(op, ": dtype ", dtype_name(dtype), " not supported on cpu");
}

bool cpu_has_avx2_fma() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }

bool cpu_has_avx512() {
  return cpu_has_avx2_fma() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
}

bool parallel_worth_it(int64_t rows, int64_t elements) {
  return rows >= 2 && elements >= kParallelGrain && parallel_threads() > 1;
}

void check_contiguous(const char* op, const char* what, const Tensor& t) {
  MMS_CHECK(t.is_contiguous(), op, ": ", what, " must be contiguous (shape ",
            shape_str(t.shape()), ")");
}

}  // namespace cpu
}  // namespace mms
