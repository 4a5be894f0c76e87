// Dispatch for copies, fills, dtype casts, and the checks every op family shares.
#include "tensor/ops.h"

namespace mms::ops {

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  MMS_CHECK(a.device() == b.device(), op, ": tensors are on different devices (",
            a.device().str(), " and ", b.device().str(), ")");
}

void check_same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  MMS_CHECK(a.dtype() == b.dtype(), op, ": dtypes differ (", dtype_name(a.dtype()), " ",
            shape_str(a.shape()), " and ", dtype_name(b.dtype()), " ", shape_str(b.shape()), ")");
}

void check_floating(const char* op, const Tensor& x) {
  MMS_CHECK(x.dtype() == DType::Float32 || x.dtype() == DType::Float64, op,
            ": expected a float32 or float64 tensor, got ", dtype_name(x.dtype()), " ",
            shape_str(x.shape()));
}

void copy_(Tensor& dst, const Tensor& src) {
  check_same_device("copy_", dst, src);
  MMS_CHECK(!dst.storage()->read_only(), "copy_: destination ", shape_str(dst.shape()),
            " is read-only (memory-mapped); clone it first");
  Tensor source = src.shape() == dst.shape() ? src : expand(src, dst.shape());
  if (dst.numel() > 0) backend_for(dst.device()).copy(source, dst);
}

void fill_(Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  if (dst.is_contiguous()) {
    backend_for(dst.device()).fill(dst, value);
    return;
  }
  copy_(dst, full({}, value, dst.dtype(), dst.device()));
}

Tensor cast(const Tensor& x, DType dtype) {
  Tensor out = empty(x.shape(), dtype, x.device());
  if (x.numel() > 0) backend_for(x.device()).copy(x, out);
  return out;
}

}  // namespace mms::ops
