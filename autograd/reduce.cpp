// Reductions and their derivatives: the incoming gradient is viewed with the reduced
// dims kept as size 1 and broadcast back over the input.
#include "autograd/api.h"

namespace mms {

namespace {
using Grads = std::vector<Tensor>;

// The input shape with every reduced dim set to 1 (dims empty = all).
Shape kept_shape(const Shape& shape, const std::vector<int64_t>& dims) {
  Shape kept = shape;
  const int64_t ndim = static_cast<int64_t>(shape.size());
  if (dims.empty()) {
    for (auto& s : kept) s = 1;
    return kept;
  }
  for (int64_t d : dims) kept[ops::wrap_dim(d, ndim, "reduce")] = 1;
  return kept;
}

Tensor spread(const Tensor& g, const Shape& kept, const Shape& shape) {
  return ops::expand(ops::reshape(g, kept), shape);
}
}  // namespace

// d sum = g broadcast back
Tensor sum(const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
  Shape shape = x.shape(), kept = kept_shape(x.shape(), dims);
  return record("sum", ops::sum(x, dims, keepdim), {x}, [shape, kept](const Tensor& g, const std::vector<bool>&) {
    return Grads{spread(g, kept, shape)};
  });
}

// d mean = g / count broadcast back
Tensor mean(const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
  Shape shape = x.shape(), kept = kept_shape(x.shape(), dims);
  const double count = static_cast<double>(x.numel()) / static_cast<double>(std::max<int64_t>(shape_numel(kept), 1));
  return record("mean", ops::mean(x, dims, keepdim), {x}, [shape, kept, count](const Tensor& g, const std::vector<bool>&) {
    return Grads{spread(ops::mul_scalar(g, 1.0 / count), kept, shape)};
  });
}

// d amax = g split evenly over the maximal elements
Tensor amax(const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
  Tensor y = ops::amax(x, dims, keepdim);
  Tensor xs = saved(x), ys = saved(y);
  Shape shape = x.shape(), kept = kept_shape(x.shape(), dims);
  return record("amax", y, {x}, [xs, ys, shape, kept, dims](const Tensor& g, const std::vector<bool>&) {
    Tensor is_max = ops::cast(ops::binary(BinaryOp::Eq, xs, spread(ys, kept, shape)), xs.dtype());
    Tensor count = ops::sum(is_max, dims, true);
    Tensor share = ops::div(ops::reshape(g, kept), count);
    return Grads{ops::mul(is_max, ops::expand(share, shape))};
  });
}

// d logsumexp = g * softmax(x) = g * exp(x - lse)
Tensor logsumexp(const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
  Tensor y = ops::logsumexp(x, dims, keepdim);
  Tensor xs = saved(x), ys = saved(y);
  Shape shape = x.shape(), kept = kept_shape(x.shape(), dims);
  return record("logsumexp", y, {x}, [xs, ys, shape, kept](const Tensor& g, const std::vector<bool>&) {
    Tensor prob = ops::exp(ops::sub(xs, spread(ys, kept, shape)));
    return Grads{ops::mul(prob, spread(g, kept, shape))};
  });
}

}  // namespace mms
