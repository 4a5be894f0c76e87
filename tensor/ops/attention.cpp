// Dispatch for fused scaled-dot-product attention.
#include "tensor/ops.h"

namespace mms::ops {

namespace {
void check_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_keep) {
  check_floating("attention", q);
  for (const Tensor* t : {&k, &v}) {
    check_same_dtype("attention", q, *t);
    check_same_device("attention", q, *t);
  }
  MMS_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
            "attention: q, k, v must be [batch, heads, length, head_dim], got ",
            shape_str(q.shape()), ", ", shape_str(k.shape()), ", ", shape_str(v.shape()));
  MMS_CHECK(q.size(0) == k.size(0) && q.size(1) == k.size(1) && q.size(3) == k.size(3) &&
                k.shape() == v.shape(),
            "attention: q ", shape_str(q.shape()), ", k ", shape_str(k.shape()), ", v ",
            shape_str(v.shape()), " do not agree");
  if (key_keep.defined()) {
    check_same_device("attention", q, key_keep);
    MMS_CHECK(key_keep.dim() == 2 && key_keep.size(0) == k.size(0) && key_keep.size(1) == k.size(2),
              "attention: key mask ", shape_str(key_keep.shape()), " must be [batch, key_length] = [",
              k.size(0), ", ", k.size(2), "]");
    MMS_CHECK(key_keep.dtype() == DType::Bool || key_keep.dtype() == DType::UInt8 ||
                  key_keep.dtype() == DType::Int64,
              "attention: key mask must be bool, uint8 or int64, got ", dtype_name(key_keep.dtype()));
  }
}
}  // namespace

AttentionResult attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_keep,
                          bool causal, double scale) {
  check_attention(q, k, v, key_keep);
  AttentionResult result;
  result.out = empty(q.shape(), q.dtype(), q.device());
  result.lse = empty({q.size(0), q.size(1), q.size(2)}, q.dtype(), q.device());
  if (q.numel() > 0)
    backend_for(q.device()).attention(q.contiguous(), k.contiguous(), v.contiguous(),
                                      key_keep.defined() ? key_keep.contiguous() : key_keep, causal,
                                      scale, result.out, result.lse);
  return result;
}

AttentionGrads attention_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k,
                                  const Tensor& v, const Tensor& out, const Tensor& lse,
                                  const Tensor& key_keep, bool causal, double scale) {
  check_attention(q, k, v, key_keep);
  MMS_CHECK(grad_out.shape() == q.shape(), "attention backward: gradient ",
            shape_str(grad_out.shape()), " does not match the output ", shape_str(q.shape()));
  AttentionGrads grads;
  grads.grad_q = empty(q.shape(), q.dtype(), q.device());
  grads.grad_k = empty(k.shape(), k.dtype(), k.device());
  grads.grad_v = empty(v.shape(), v.dtype(), v.device());
  if (q.numel() > 0 && k.numel() > 0) {
    backend_for(q.device()).attention_backward(
        grad_out.contiguous(), q.contiguous(), k.contiguous(), v.contiguous(), out, lse,
        key_keep.defined() ? key_keep.contiguous() : key_keep, causal, scale, grads.grad_q,
        grads.grad_k, grads.grad_v);
  } else {
    fill_(grads.grad_q, 0.0);
    fill_(grads.grad_k, 0.0);
    fill_(grads.grad_v, 0.0);
  }
  return grads;
}

}  // namespace mms::ops
