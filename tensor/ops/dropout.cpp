// Dispatch for fused dropout: check, make x contiguous (the kernels index the Philox
// stream by flat row-major position, as rand does), allocate, call the device kernel
// (tensor/cpu/dropout.cpp, cuda/dropout.cu).
#include "tensor/ops.h"

namespace mms::ops {

Tensor dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset) {
  check_floating("dropout", x);
  MMS_CHECK(p >= 0.0 && p <= 1.0, "dropout: probability must be in [0, 1], got ", p);
  MMS_CHECK(x.dtype() == DType::Float32 || x.dtype() == DType::Float64,
            "dropout: dtype ", dtype_name(x.dtype()), " is not supported (use float32 or float64)");
  Tensor out = empty(x.shape(), x.dtype(), x.device());
  if (out.numel() > 0) backend_for(x.device()).dropout(x.contiguous(), p, seed, offset, out);
  return out;
}

}  // namespace mms::ops
