// Scaled-dot-product attention. Neither path keeps the [B, H, Lq, Lk] probabilities
// for the backward: it keeps q, k, v (below) and the row log-sum-exp, and recomputes
// them -- the fused kernel from the saved output and log-sum-exp (as flash attention
// does), the GEMM path by redoing QK^T and the softmax. Saved memory stays O(L) per row.
//
// q, k, v usually arrive as transposed head views of the projections ([B, L, H, D] seen
// as [B, H, L, D]). They are made contiguous once, here, and those copies are saved, so
// neither the forward nor the backward gathers the same view again (the projections'
// own outputs are then free to go). The tensor-core tiles and the CPU's kernel read the
// views where they lie instead (ops::attention_reads_views): those are saved as they
// are, and no copy is made.
//
// Autocast (autograd/autocast.h): when attention takes its GEMM path (short sequences
// on CUDA, tensor/ops/attention.cpp), the copies are made in bfloat16 instead -- the
// same single pass -- and QK^T / PV run as mixed bf16 GEMMs with float32 scores, softmax
// and log-sum-exp, as torch.autocast does for scaled_dot_product_attention. With
// MMS_ATTENTION=cudnn on CUDA the bf16 copies go to cuDNN's fused kernel instead, whose
// output is bf16 (the out projection then needs no cast). Our fused kernel computes in
// float32 either way. Gradients return in the inputs' dtypes.
#include <cmath>

#include "autograd/api.h"
#include "autograd/autocast.h"

namespace mms {

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& key_keep, bool causal, std::optional<double> scale) {
  MMS_CHECK(q.dim() == 4, "attention: q must be [batch, heads, length, head_dim], got ",
            shape_str(q.shape()));
  const double s = scale.value_or(1.0 / std::sqrt(static_cast<double>(q.size(3))));
  const std::optional<DType> autocast = autocast_dtype();
  const bool mixed = autocast && q.dtype() == DType::Float32 && k.dtype() == DType::Float32 &&
                     v.dtype() == DType::Float32 && ops::attention_takes_bf16(q, k);
  const bool views = !mixed && ops::attention_reads_views(q, k);  // the tiles and the CPU read strided views
  auto operand = [&](const Tensor& t) { return mixed ? ops::cast(t, *autocast) : views ? t : t.contiguous(); };
  const Tensor qs = saved(operand(q)), ks = saved(operand(k)), vs = saved(operand(v));
  // bf16 inputs (the bf16 projections under autocast) give a bf16 output, as torch's
  // bf16 attention does, and take bf16 gradients back (both written so by the GEMMs).
  const bool bf16_inputs =
      q.dtype() == DType::BFloat16 && k.dtype() == DType::BFloat16 && v.dtype() == DType::BFloat16;
  const std::optional<DType> bf16_if_inputs = bf16_inputs ? std::optional(DType::BFloat16) : std::nullopt;
  ops::AttentionResult r = ops::attention(qs, ks, vs, key_keep, causal, s, bf16_if_inputs);
  // Only the fused backward reads the output; the GEMM path recomputes the softmax, so
  // there the output is not kept alive (a [B, H, L, D] float32 per layer).
  const Tensor os = ops::attention_uses_gemm(qs, ks) ? Tensor() : saved(r.out);
  Tensor lse = r.lse, mask = key_keep;
  // Gradients go back in each input's dtype (bf16 inputs get bf16 gradients; the mixed
  // form's float32 inputs float32 ones).
  const DType q_dtype = q.dtype(), k_dtype = k.dtype(), v_dtype = v.dtype();
  return record("scaled_dot_product_attention", r.out, {q, k, v},
                [qs, ks, vs, os, lse, mask, causal, s, q_dtype, k_dtype, v_dtype, bf16_if_inputs](
                    const Tensor& g, const std::vector<bool>&) {
                  ops::AttentionGrads ag =
                      ops::attention_backward(g, qs, ks, vs, os, lse, mask, causal, s, bf16_if_inputs);
                  return std::vector<Tensor>{ag.grad_q.to(q_dtype), ag.grad_k.to(k_dtype), ag.grad_v.to(v_dtype)};
                });
}

// Self-attention over one packed projection: qkv [B, L, 3 * H * Dh], q, k and v side by
// side as one linear with a [3D, D] weight makes them. The heads are views of it
// ([B, L, 3, H, Dh] memory), so the projection is one GEMM forward and one input-gradient
// GEMM backward (three GEMMs and two [B, L, D] gradient sums before), and the backward
// writes the three gradients into one packed tensor: in place with the tensor-core tiles
// and the CPU's kernel, which also read the views where they lie and write an output
// whose head merge is a view; the other paths gather each head view once (kept for the
// backward) and copy their gradients in. Under autocast a float32 qkv's head views are
// gathered as bf16.
Tensor packed_self_attention(const Tensor& qkv, int64_t heads, const Tensor& key_keep, bool causal,
                             std::optional<double> scale) {
  MMS_CHECK(qkv.dim() == 3 && heads > 0 && qkv.size(2) % (3 * heads) == 0,
            "packed_self_attention: qkv must be [batch, length, 3 * heads * head_dim] with ", heads,
            " heads, got ", shape_str(qkv.shape()));
  const int64_t batch = qkv.size(0), length = qkv.size(1), width = qkv.size(2) / 3, head_dim = width / heads;
  const double s = scale.value_or(1.0 / std::sqrt(static_cast<double>(head_dim)));
  const std::optional<DType> autocast = autocast_dtype();
  const bool mixed = autocast && qkv.dtype() == DType::Float32 && ops::attention_takes_bf16(qkv.device(), length);
  const Tensor packed = ops::reshape(qkv, {batch, length, 3, heads, head_dim});
  auto head_view = [&](const Tensor& five_dims, int64_t which) {  // [B, H, L, Dh] view of part `which`
    return ops::transpose(ops::select(five_dims, 2, which), 1, 2);
  };
  Tensor q = head_view(packed, 0), k = head_view(packed, 1), v = head_view(packed, 2);
  if (mixed) {  // each head view gathered and cast in one pass (the tiles read contiguous heads too)
    q = ops::cast(q, *autocast), k = ops::cast(k, *autocast), v = ops::cast(v, *autocast);
  } else if (!ops::attention_reads_views(q, k)) {
    q = q.contiguous(), k = k.contiguous(), v = v.contiguous();
  }
  // bf16 qkv (autocast's bf16 projection) gives a bf16 output and takes bf16 gradients.
  const std::optional<DType> bf16_if_packed =
      qkv.dtype() == DType::BFloat16 ? std::optional(DType::BFloat16) : std::nullopt;
  ops::AttentionResult r = ops::attention(q, k, v, key_keep, causal, s, bf16_if_packed);
  const Tensor merged = ops::reshape(ops::transpose(r.out, 1, 2).contiguous(), {batch, length, width});
  const Tensor qs = saved(q), ks = saved(k), vs = saved(v);
  const Tensor os = ops::attention_uses_gemm(q, k) ? Tensor() : saved(r.out);  // only the fused paths read it
  const Tensor lse = r.lse, mask = key_keep;
  const DType grad_dtype = qkv.dtype();
  return record("packed_self_attention", merged, {qkv},
                [=](const Tensor& g, const std::vector<bool>&) {
                  const Tensor g_heads = ops::transpose(ops::reshape(g, {batch, length, heads, head_dim}), 1, 2);
                  Tensor grad = empty({batch, length, 3, heads, head_dim}, grad_dtype, g.device());
                  Tensor grad_q = head_view(grad, 0), grad_k = head_view(grad, 1), grad_v = head_view(grad, 2);
                  ops::attention_backward_into(g_heads, qs, ks, vs, os, lse, mask, causal, s, grad_q, grad_k, grad_v);
                  return std::vector<Tensor>{ops::reshape(grad, {batch, length, 3 * width})};
                });
}

}  // namespace mms
