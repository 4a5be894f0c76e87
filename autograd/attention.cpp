// Fused scaled-dot-product attention. The forward saves only the output and the
// row log-sum-exp; the backward recomputes the probabilities from them (as flash
// attention does), so memory stays O(L) per row instead of O(L^2).
// Autocast (autograd/autocast.h) does not reach in here: q, k, v arrive in float32 (the
// projections' mixed GEMMs return float32) and both paths of ops::attention, the fused
// kernel and the QK^T / PV batched GEMMs, compute in float32 (TF32 when it is on). A
// bf16 attention is one of issue 8's open levers.
#include <cmath>

#include "autograd/api.h"

namespace mms {

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& key_keep, bool causal, std::optional<double> scale) {
  MMS_CHECK(q.dim() == 4, "attention: q must be [batch, heads, length, head_dim], got ",
            shape_str(q.shape()));
  const double s = scale.value_or(1.0 / std::sqrt(static_cast<double>(q.size(3))));
  ops::AttentionResult r = ops::attention(q, k, v, key_keep, causal, s);
  Tensor qs = saved(q), ks = saved(k), vs = saved(v), os = saved(r.out), lse = r.lse, mask = key_keep;
  return record("scaled_dot_product_attention", r.out, {q, k, v},
                [qs, ks, vs, os, lse, mask, causal, s](const Tensor& g, const std::vector<bool>&) {
                  ops::AttentionGrads ag = ops::attention_backward(g, qs, ks, vs, os, lse, mask, causal, s);
                  return std::vector<Tensor>{ag.grad_q, ag.grad_k, ag.grad_v};
                });
}

}  // namespace mms
