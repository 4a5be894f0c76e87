#include "precision.h"

#include <optional>

#include "tensor/error.h"

#ifdef MMS_WITH_CUDA
#include "cuda/gemm.h"
#endif

namespace mmsft {

namespace {
std::optional<mms::DType> autocast_for(const std::string& precision) {
  MMS_CHECK(known_precision(precision), "--precision must be fp32, tf32 or bf16, got '", precision, "'");
  if (precision == "bf16") return mms::DType::BFloat16;
  return std::nullopt;
}

bool tf32_enabled() {
#ifdef MMS_WITH_CUDA
  return mms::cuda::tf32_enabled();
#else
  return false;
#endif
}

void set_tf32_enabled(bool enabled) {
#ifdef MMS_WITH_CUDA
  mms::cuda::set_tf32_enabled(enabled);
#else
  (void)enabled;  // a CPU-only build has no TF32 (Options::validate refuses tf32 off CUDA)
#endif
}
}  // namespace

bool known_precision(const std::string& precision) {
  return precision == "fp32" || precision == "tf32" || precision == "bf16";
}

PrecisionScope::PrecisionScope(const std::string& precision)
    : autocast_(autocast_for(precision)), previous_tf32_(tf32_enabled()) {
  set_tf32_enabled(precision != "fp32");
}

PrecisionScope::~PrecisionScope() { set_tf32_enabled(previous_tf32_); }

}  // namespace mmsft
