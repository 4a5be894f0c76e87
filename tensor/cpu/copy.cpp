// copy (strided, with dtype conversion), fill and arange: the data-movement kernels.
#include <cstring>

#include "tensor/cpu/convert.h"
#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/strided.h"

namespace mms::cpu {

void CpuBackend::copy(const Tensor& src, Tensor& dst) {
  MMS_CHECK(src.shape() == dst.shape(), "copy: source shape ", shape_str(src.shape()),
            " differs from destination shape ", shape_str(dst.shape()));
  if (src.numel() == 0) return;
  // Same dtype, both contiguous: one memcpy (memmove: a view may overlap itself).
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    std::memmove(dst.raw_data(), src.raw_data(), src.numel() * src.element_size());
    return;
  }
  dispatch_all(src.dtype(), "copy", [&](auto src_tag) {
    using S = typename decltype(src_tag)::type;
    dispatch_all(dst.dtype(), "copy", [&](auto dst_tag) {
      using D = typename decltype(dst_tag)::type;
      const S* in = static_cast<const S*>(src.raw_data());
      D* out = static_cast<D*>(dst.raw_data());
      strided_for<2>(dst.shape(), {&src.strides(), &dst.strides()},
                     [&](const auto& off, const auto& st, int64_t n) {
                       const S* i = in + off[0];
                       D* o = out + off[1];
                       if (st[0] == 1 && st[1] == 1) {
                         for (int64_t j = 0; j < n; ++j) o[j] = convert_value<D>(i[j]);
                       } else {
                         for (int64_t j = 0; j < n; ++j) o[j * st[1]] = convert_value<D>(i[j * st[0]]);
                       }
                     });
    });
  });
}

// The contract asks for a contiguous dst; any strides work (a fill of a view is handy).
void CpuBackend::fill(Tensor& dst, double value) {
  dispatch_all(dst.dtype(), "fill", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T v = convert_value<T>(value);
    T* out = static_cast<T*>(dst.raw_data());
    strided_for<1>(dst.shape(), {&dst.strides()}, [&](const auto& off, const auto& st, int64_t n) {
      T* o = out + off[0];
      for (int64_t j = 0; j < n; ++j) o[j * st[0]] = v;
    });
  });
}

void CpuBackend::arange(Tensor& dst, double start, double step) {
  MMS_CHECK(dst.dim() == 1, "arange: destination must be 1-D, got ", shape_str(dst.shape()));
  check_contiguous("arange", "destination", dst);
  dispatch_all(dst.dtype(), "arange", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* out = static_cast<T*>(dst.raw_data());
    const int64_t n = dst.numel();
    // start + i * step (not a running sum) so the error does not grow with i
    for (int64_t i = 0; i < n; ++i) out[i] = convert_value<T>(start + static_cast<double>(i) * step);
  });
}

}  // namespace mms::cpu
