// The thread-local autocast switch (autograd/autocast.h); autograd/linalg.cpp reads it.
#include "autograd/autocast.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "tensor/error.h"

namespace mms {

namespace {
thread_local std::optional<DType> autocast_setting;
}  // namespace

std::optional<DType> autocast_dtype() { return autocast_setting; }

namespace {
// -1: not read yet; 0 / 1: off / on.
std::atomic<int> bf16_activations{-1};
}  // namespace

bool bf16_activations_enabled() {
  int enabled = bf16_activations.load(std::memory_order_relaxed);
  if (enabled < 0) {
    const char* env = std::getenv("MMS_BF16_ACTIVATIONS");
    enabled = env != nullptr && std::strcmp(env, "0") == 0 ? 0 : 1;
    bf16_activations.store(enabled, std::memory_order_relaxed);
  }
  return enabled == 1;
}

void set_bf16_activations_enabled(bool enabled) {
  bf16_activations.store(enabled ? 1 : 0, std::memory_order_relaxed);
}

AutocastGuard::AutocastGuard(std::optional<DType> dtype) : previous_(autocast_setting) {
  MMS_CHECK(!dtype || *dtype == DType::BFloat16, "AutocastGuard: only bfloat16 autocast is supported, got ",
            dtype_name(*dtype));
  autocast_setting = dtype;
}

AutocastGuard::~AutocastGuard() { autocast_setting = previous_; }

}  // namespace mms
