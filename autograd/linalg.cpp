// matmul and linear with their derivatives:
//   C = A B      =>  dA = dC B^T,  dB = A^T dC  (summed over broadcast batch dims)
//   y = x W^T + b =>  dx = dy W,   dW = dy^T x,  db = sum of dy over rows
#include "autograd/api.h"

namespace mms {

namespace {
using Grads = std::vector<Tensor>;

Tensor matmul_2d_or_more(const Tensor& a, const Tensor& b) {
  Tensor as = saved(a), bs = saved(b);
  return record("matmul", ops::matmul(a, b), {a, b}, [as, bs](const Tensor& g, const std::vector<bool>& needs) {
    Tensor ga, gb;
    if (needs[0]) ga = ops::sum_to(ops::matmul(g, ops::transpose(bs, -1, -2)), as.shape());
    if (needs[1]) gb = ops::sum_to(ops::matmul(ops::transpose(as, -1, -2), g), bs.shape());
    return Grads{ga, gb};
  });
}
}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  MMS_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: both operands need at least 1 dim, got ",
            shape_str(a.shape()), " and ", shape_str(b.shape()));
  // Vectors are promoted to matrices (and squeezed back) with differentiable views, so
  // the Node below only ever sees operands of rank >= 2.
  const bool a_vector = a.dim() == 1, b_vector = b.dim() == 1;
  Tensor result = matmul_2d_or_more(a_vector ? unsqueeze(a, 0) : a, b_vector ? unsqueeze(b, 1) : b);
  if (a_vector) result = squeeze(result, -2);
  if (b_vector) result = squeeze(result, -1);
  return result;
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  Tensor y = ops::linear(x, weight, bias);
  Tensor xs = saved(x), ws = saved(weight);
  return record("linear", y, {x, weight, bias}, [xs, ws](const Tensor& g, const std::vector<bool>& needs) {
    const int64_t out_features = ws.size(0), in_features = ws.size(1);
    Tensor g2 = ops::reshape(g, {-1, out_features});
    Tensor gx, gw, gb;
    if (needs[0]) gx = ops::reshape(ops::matmul(g2, ws), xs.shape());
    if (needs[1]) gw = ops::matmul(ops::transpose(g2, 0, 1), ops::reshape(xs, {-1, in_features}));
    if (needs[2]) gb = ops::sum(g2, {0});
    return Grads{gx, gw, gb};
  });
}

}  // namespace mms
