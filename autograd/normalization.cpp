// softmax, log_softmax, layer_norm and L2 normalisation with fused backward passes.
#include "autograd/api.h"
#include "autograd/autocast.h"

namespace mms {

namespace {
using Grads = std::vector<Tensor>;

Tensor softmax_node(const Tensor& x, int64_t dim, bool log) {
  Tensor y = log ? ops::log_softmax(x, dim) : ops::softmax(x, dim);
  Tensor ys = saved(y);
  return record(log ? "log_softmax" : "softmax", y, {x}, [ys, dim, log](const Tensor& g, const std::vector<bool>&) {
    return Grads{ops::softmax_backward(g, ys, dim, log)};
  });
}
}  // namespace

// dx = y * (g - sum(g * y))
Tensor softmax(const Tensor& x, int64_t dim) { return softmax_node(x, dim, false); }
// dx = g - softmax(x) * sum(g)
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_node(x, dim, true); }

// With xhat = (x - mean) * rstd over the last dim of size N:
//   dxhat = g * w
//   dx    = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
//   dw    = sum over rows of g * xhat,   db = sum over rows of g
// The gradient x already has from its other consumer (a residual stream's next add) is
// folded into dx by the same kernel (FoldedGrads, autograd/node.h): one add fewer per norm.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, AutocastOutput output) {
  const bool bf16_output = output == AutocastOutput::BFloat16 && autocast_dtype() == DType::BFloat16 &&
                           x.dtype() == DType::Float32 && bf16_activations_enabled();
  ops::LayerNormResult r =
      ops::layer_norm(x, weight, bias, eps, bf16_output ? std::optional(DType::BFloat16) : std::nullopt);
  Tensor xs = saved(x), ws = saved(weight), mean = r.mean, rstd = r.rstd;
  const bool has_weight = weight.defined(), has_bias = bias.defined();
  return record_folding(
      "layer_norm", r.y, {x, weight, bias},
      [xs, ws, mean, rstd, has_weight, has_bias](const Tensor& g, const std::vector<bool>& needs,
                                                 const std::vector<Tensor>& partials) {
        const bool weight_grads = (has_weight && needs[1]) || (has_bias && needs[2]);
        ops::LayerNormGrads lg = ops::layer_norm_backward(g, xs, ws, mean, rstd, weight_grads, partials[0]);
        return FoldedGrads{{needs[0] ? lg.grad_x : Tensor(), needs[1] ? lg.grad_weight : Tensor(),
                            needs[2] ? lg.grad_bias : Tensor()},
                           {needs[0] && lg.addend_folded, false, false}};
      });
}

// y = x / d with n = ||x||, d = max(n, eps). For n > eps: dx = (g - y * sum(g*y)) / n;
// where the norm is clamped (n <= eps) d is constant and dx = g / eps. Written as its
// own Node so that x = 0 gives a finite gradient (sqrt'(0) never appears).
Tensor normalize(const Tensor& x, int64_t dim, double eps) {
  ops::check_floating("normalize", x);
  Tensor norm = ops::sqrt(ops::sum(ops::square(x), {dim}, true));
  Tensor denom = ops::clamp(norm, eps, std::nullopt);
  Tensor y = ops::div(x, denom);
  Tensor ys = saved(y), ns = norm, ds = denom;
  return record("normalize", y, {x}, [ys, ns, ds, dim, eps](const Tensor& g, const std::vector<bool>&) {
    Tensor projection = ops::sum(ops::mul(g, ys), {dim}, true);
    Tensor clamped = ops::binary(BinaryOp::Le, ns, full({}, eps, ns.dtype(), ns.device()));
    Tensor zero = full({}, 0.0, g.dtype(), g.device());
    Tensor radial = ops::where(clamped, zero, ops::mul(ys, projection));
    return Grads{ops::div(ops::sub(g, radial), ds)};
  });
}

}  // namespace mms
