// Views and conversions: the gradient of a view is the inverse view of the gradient
// (reshape back, inverse permutation, zero-padding for slices, sum for expand).
#include "autograd/api.h"

namespace mms {

namespace {
using Grads = std::vector<Tensor>;

Tensor reshape_node(const char* op, const Tensor& x, const Tensor& y) {
  Shape shape = x.shape();
  return record(op, y, {x}, [shape](const Tensor& g, const std::vector<bool>&) {
    return Grads{ops::reshape(g, shape)};
  });
}

// Gradient of a slice: zeros of the input's shape with g written into the slice.
template <typename Slicer>
Tensor embed_slice(const Tensor& g, const Shape& shape, Slicer slicer) {
  Tensor full_grad = zeros(shape, g.dtype(), g.device());
  Tensor slot = slicer(full_grad);
  ops::copy_(slot, g);
  return full_grad;
}
}  // namespace

Tensor reshape(const Tensor& x, Shape shape) { return reshape_node("reshape", x, ops::reshape(x, std::move(shape))); }
Tensor view(const Tensor& x, Shape shape) { return reshape_node("view", x, ops::view(x, std::move(shape))); }
Tensor flatten(const Tensor& x, int64_t start_dim, int64_t end_dim) {
  return reshape_node("flatten", x, ops::flatten(x, start_dim, end_dim));
}
Tensor squeeze(const Tensor& x, int64_t dim) { return reshape_node("squeeze", x, ops::squeeze(x, dim)); }
Tensor unsqueeze(const Tensor& x, int64_t dim) { return reshape_node("unsqueeze", x, ops::unsqueeze(x, dim)); }

Tensor permute(const Tensor& x, const std::vector<int64_t>& order) {
  Tensor y = ops::permute(x, order);
  std::vector<int64_t> inverse(order.size());
  for (size_t i = 0; i < order.size(); ++i) inverse[ops::wrap_dim(order[i], x.dim(), "permute")] = static_cast<int64_t>(i);
  return record("permute", y, {x}, [inverse](const Tensor& g, const std::vector<bool>&) {
    return Grads{ops::permute(g, inverse)};
  });
}

Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1) {
  return record("transpose", ops::transpose(x, dim0, dim1), {x}, [dim0, dim1](const Tensor& g, const std::vector<bool>&) {
    return Grads{ops::transpose(g, dim0, dim1)};
  });
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  Tensor y = ops::narrow(x, dim, start, length);
  Shape shape = x.shape();
  return record("narrow", y, {x}, [shape, dim, start, length](const Tensor& g, const std::vector<bool>&) {
    return Grads{embed_slice(g, shape, [&](const Tensor& t) { return ops::narrow(t, dim, start, length); })};
  });
}

Tensor select(const Tensor& x, int64_t dim, int64_t index) {
  Tensor y = ops::select(x, dim, index);
  Shape shape = x.shape();
  return record("select", y, {x}, [shape, dim, index](const Tensor& g, const std::vector<bool>&) {
    return Grads{embed_slice(g, shape, [&](const Tensor& t) { return ops::select(t, dim, index); })};
  });
}

Tensor expand(const Tensor& x, const Shape& shape) {
  Shape original = x.shape();
  return record("expand", ops::expand(x, shape), {x}, [original](const Tensor& g, const std::vector<bool>&) {
    return Grads{ops::sum_to(g, original)};
  });
}

Tensor contiguous(const Tensor& x) {
  return record("contiguous", x.contiguous(), {x}, [](const Tensor& g, const std::vector<bool>&) {
    return Grads{g};
  });
}

Tensor to_dtype(const Tensor& x, DType dtype) {
  const DType original = x.dtype();
  return record("to_dtype", x.to(dtype), {x}, [original](const Tensor& g, const std::vector<bool>&) {
    return Grads{g.to(original)};
  });
}

Tensor to_device(const Tensor& x, Device device) {
  const Device original = x.device();
  return record("to_device", x.to(device), {x}, [original](const Tensor& g, const std::vector<bool>&) {
    return Grads{g.to(original)};
  });
}

}  // namespace mms
