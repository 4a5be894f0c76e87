// The thread-local autocast switch (autograd/autocast.h); autograd/linalg.cpp reads it.
#include "autograd/autocast.h"

#include "tensor/error.h"

namespace mms {

namespace {
thread_local std::optional<DType> autocast_setting;
}  // namespace

std::optional<DType> autocast_dtype() { return autocast_setting; }

AutocastGuard::AutocastGuard(std::optional<DType> dtype) : previous_(autocast_setting) {
  MMS_CHECK(!dtype || *dtype == DType::BFloat16, "AutocastGuard: only bfloat16 autocast is supported, got ",
            dtype_name(*dtype));
  autocast_setting = dtype;
}

AutocastGuard::~AutocastGuard() { autocast_setting = previous_; }

}  // namespace mms
