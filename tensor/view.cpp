#include "tensor/view.h"

#include <algorithm>

namespace mms::ops {

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  const int64_t wrapped = dim < 0 ? dim + ndim : dim;
  MMS_CHECK(wrapped >= 0 && wrapped < std::max<int64_t>(ndim, 1) && (ndim > 0 || wrapped == 0), op,
            ": dim ", dim, " is out of range for a tensor with ", ndim, " dims");
  return wrapped;
}

namespace {
// Resolves a single -1 and checks the element count.
Shape infer_shape(const Tensor& x, Shape shape, const char* op) {
  int64_t known = 1, infer_at = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      MMS_CHECK(infer_at < 0, op, ": only one dimension can be -1, got ", shape_str(shape));
      infer_at = static_cast<int64_t>(i);
    } else {
      MMS_CHECK(shape[i] >= 0, op, ": invalid size in shape ", shape_str(shape));
      known *= shape[i];
    }
  }
  if (infer_at >= 0) {
    MMS_CHECK(known != 0 && x.numel() % known == 0, op, ": cannot reshape ", shape_str(x.shape()),
              " to ", shape_str(shape));
    shape[infer_at] = x.numel() / known;
  }
  MMS_CHECK(shape_numel(shape) == x.numel(), op, ": cannot reshape ", shape_str(x.shape()), " (",
            x.numel(), " elements) to ", shape_str(shape));
  return shape;
}

// Strides for viewing x with `shape` without a copy, or empty when impossible.
// Walks groups of old dims that merge into groups of new dims (as PyTorch's
// computeStride does): each old group must be contiguous within itself.
bool view_strides(const Tensor& x, const Shape& shape, Shape& strides) {
  strides.assign(shape.size(), 0);
  if (x.numel() == 0) {
    strides = contiguous_strides(shape);
    return true;
  }
  const Shape& old_shape = x.shape();
  const Shape& old_strides = x.strides();
  int64_t view_d = static_cast<int64_t>(shape.size()) - 1;
  int64_t chunk_base_stride = old_strides.empty() ? 1 : old_strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(old_shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= old_shape[d];
    if (d == 0 || (old_shape[d - 1] != 1 && old_strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        strides[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (d > 0) {
        chunk_base_stride = old_strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  while (view_d >= 0) strides[view_d--] = 1;  // trailing size-1 dims
  return true;
}
}  // namespace

Tensor view(const Tensor& x, Shape shape) {
  shape = infer_shape(x, std::move(shape), "view");
  Shape strides;
  MMS_CHECK(view_strides(x, shape, strides), "view: cannot view ", shape_str(x.shape()),
            " with strides ", shape_str(x.strides()), " as ", shape_str(shape),
            " without a copy (use reshape)");
  return make_view(x, shape, strides, x.offset());
}

Tensor reshape(const Tensor& x, Shape shape) {
  shape = infer_shape(x, std::move(shape), "reshape");
  Shape strides;
  if (view_strides(x, shape, strides)) return make_view(x, shape, strides, x.offset());
  Tensor copy = x.clone();
  return make_view(copy, shape, contiguous_strides(shape), 0);
}

Tensor flatten(const Tensor& x, int64_t start_dim, int64_t end_dim) {
  if (x.dim() == 0) return reshape(x, {1});
  start_dim = wrap_dim(start_dim, x.dim(), "flatten");
  end_dim = wrap_dim(end_dim, x.dim(), "flatten");
  MMS_CHECK(start_dim <= end_dim, "flatten: start_dim ", start_dim, " > end_dim ", end_dim);
  Shape shape;
  for (int64_t d = 0; d < start_dim; ++d) shape.push_back(x.size(d));
  int64_t merged = 1;
  for (int64_t d = start_dim; d <= end_dim; ++d) merged *= x.size(d);
  shape.push_back(merged);
  for (int64_t d = end_dim + 1; d < x.dim(); ++d) shape.push_back(x.size(d));
  return reshape(x, shape);
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& order) {
  MMS_CHECK(static_cast<int64_t>(order.size()) == x.dim(), "permute: order has ", order.size(),
            " entries for a tensor of shape ", shape_str(x.shape()));
  Shape shape(order.size()), strides(order.size());
  std::vector<bool> seen(order.size(), false);
  for (size_t i = 0; i < order.size(); ++i) {
    const int64_t d = wrap_dim(order[i], x.dim(), "permute");
    MMS_CHECK(!seen[d], "permute: dim ", d, " repeated in the order");
    seen[d] = true;
    shape[i] = x.size(d);
    strides[i] = x.stride(d);
  }
  return make_view(x, shape, strides, x.offset());
}

Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1) {
  std::vector<int64_t> order(x.dim());
  for (int64_t i = 0; i < x.dim(); ++i) order[i] = i;
  std::swap(order[wrap_dim(dim0, x.dim(), "transpose")], order[wrap_dim(dim1, x.dim(), "transpose")]);
  return permute(x, order);
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  dim = wrap_dim(dim, x.dim(), "narrow");
  if (start < 0) start += x.size(dim);
  MMS_CHECK(start >= 0 && length >= 0 && start + length <= x.size(dim), "narrow: range [", start,
            ", ", start + length, ") is outside dim ", dim, " of size ", x.size(dim), " (shape ",
            shape_str(x.shape()), ")");
  Shape shape = x.shape();
  shape[dim] = length;
  return make_view(x, shape, x.strides(), x.offset() + start * x.stride(dim));
}

Tensor select(const Tensor& x, int64_t dim, int64_t index) {
  dim = wrap_dim(dim, x.dim(), "select");
  const int64_t size = x.size(dim);
  MMS_CHECK(index >= -size && index < size, "select: index ", index, " is out of range for dim ",
            dim, " of size ", size);
  if (index < 0) index += size;
  Shape shape = x.shape(), strides = x.strides();
  shape.erase(shape.begin() + dim);
  strides.erase(strides.begin() + dim);
  return make_view(x, shape, strides, x.offset() + index * x.stride(dim));
}

Tensor expand(const Tensor& x, const Shape& shape) {
  MMS_CHECK(static_cast<int64_t>(shape.size()) >= x.dim(), "expand: cannot expand ",
            shape_str(x.shape()), " to fewer dims ", shape_str(shape));
  const int64_t lead = static_cast<int64_t>(shape.size()) - x.dim();
  Shape out_shape(shape.size()), strides(shape.size());
  for (int64_t i = 0; i < static_cast<int64_t>(shape.size()); ++i) {
    if (i < lead) {
      MMS_CHECK(shape[i] >= 0, "expand: new leading dim must be sized, got ", shape_str(shape));
      out_shape[i] = shape[i];
      strides[i] = 0;
      continue;
    }
    const int64_t own = x.size(i - lead);
    const int64_t want = shape[i] == -1 ? own : shape[i];
    MMS_CHECK(own == want || own == 1, "expand: cannot expand ", shape_str(x.shape()), " to ",
              shape_str(shape));
    out_shape[i] = want;
    strides[i] = own == want ? x.stride(i - lead) : 0;
  }
  return make_view(x, out_shape, strides, x.offset());
}

Tensor squeeze(const Tensor& x) {
  Shape shape, strides;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (x.size(d) == 1) continue;
    shape.push_back(x.size(d));
    strides.push_back(x.stride(d));
  }
  return make_view(x, shape, strides, x.offset());
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  dim = wrap_dim(dim, x.dim(), "squeeze");
  MMS_CHECK(x.size(dim) == 1, "squeeze: dim ", dim, " of shape ", shape_str(x.shape()),
            " has size ", x.size(dim), ", not 1");
  Shape shape = x.shape(), strides = x.strides();
  shape.erase(shape.begin() + dim);
  strides.erase(strides.begin() + dim);
  return make_view(x, shape, strides, x.offset());
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  dim = wrap_dim(dim, x.dim() + 1, "unsqueeze");
  Shape shape = x.shape(), strides = x.strides();
  const int64_t stride = dim < x.dim() ? x.stride(dim) * x.size(dim) : 1;
  shape.insert(shape.begin() + dim, 1);
  strides.insert(strides.begin() + dim, stride);
  return make_view(x, shape, strides, x.offset());
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    MMS_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a), " and ", shape_str(b),
              " cannot be broadcast together");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

}  // namespace mms::ops
