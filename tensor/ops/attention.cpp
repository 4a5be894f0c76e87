// Dispatch for scaled-dot-product attention, by one of four paths:
//
//  - Fused: the device's attention kernel (flash-style on CUDA: online softmax, the
//    [Lq, Lk] score matrix never leaves the chip; per-head GEMMs on the CPU, which read
//    the head views in place and write heads-last, as the tiles below do).
//  - Gemm: two batched GEMMs around a masked softmax (the backends' attention_softmax:
//    one row kernel that applies the causal and key-padding masks itself).
//    It materialises the scores, [B, H, Lq, Lk], so it only pays for short sequences;
//    there it hands the O(L^2 D) work to cuBLAS's tensor-core GEMMs, which our flash
//    kernel's CUDA-core loops cannot match (CLIP's 50 image and 77 text tokens).
//  - Cudnn: cuDNN's fused flash attention (cuda/cudnn_attention.h), for bf16 operands on
//    CUDA only, chosen explicitly; kept beside ours so that a benchmark decides.
//  - Tiles: our tensor-core kernel for short sequences (cuda/attention_tiles.h), bf16
//    operands on CUDA, lengths up to 128: the default there since the H200 measured it
//    (bench/kernels attention, ViT-B/32 B = 32: forward 20.9 us against cuDNN's 53.0
//    and the GEMM path's 69.1, backward 46.0 / 100.3 / 164.3 us; bench/step bf16 at
//    B = 128 55.3 ms against 56.1 and 73.0). One block holds a whole (batch, head), so
//    nothing of size [Lq, Lk] leaves the chip; it reads q, k, v (and dO) through their
//    strides and writes the output and the gradients as [B, L, H, D] memory seen as
//    [B, H, L, D]: the head transposes around attention cost nothing. Other sizes take
//    the GEMM path.
//
// All compute the same function and the same log-sum-exp. The fused backwards rebuild
// the probabilities from the forward's output and log-sum-exp; the Gemm backward
// recomputes the softmax and needs neither, so autograd keeps the output only for the
// fused paths (autograd/attention.cpp) and the path must not change between a forward
// and its backward (a fused backward without the output is an error). Auto picks the
// tiles for bf16 operands on CUDA where they fit, else Gemm on CUDA for Lk <= 256, Fused
// otherwise; MMS_ATTENTION=fused|gemm|cudnn|tiles in the environment (or
// set_attention_path) overrides.
//
// Mixed precision (autocast, autograd/attention.cpp): q, k, v may arrive as bfloat16.
// The Gemm path (or cuDNN's) takes them: QK^T and PV run as bf16 x bf16 GEMMs with
// float32 accumulation, the scores, softmax and log-sum-exp stay float32, and the
// probabilities are rounded to bf16 only as PV's operand (written so by the softmax
// kernel; as torch's bf16 SDPA does). The output and the gradients are float32 by
// default, or bf16 when asked (out_dtype / grads_dtype: what bf16 inputs want back);
// cuDNN's are bf16; the tiles write either.
#include <cstdlib>
#include <cstring>

#include "tensor/ops.h"

namespace mms::ops {

namespace {
AttentionPath& configured_path() {
  static AttentionPath path = [] {
    const char* env = std::getenv("MMS_ATTENTION");
    if (env && std::strcmp(env, "fused") == 0) return AttentionPath::Fused;
    if (env && std::strcmp(env, "gemm") == 0) return AttentionPath::Gemm;
    if (env && std::strcmp(env, "cudnn") == 0) return AttentionPath::Cudnn;
    if (env && std::strcmp(env, "tiles") == 0) return AttentionPath::Tiles;
    return AttentionPath::Auto;
  }();
  return path;
}

// cuDNN's fused attention: chosen, on CUDA, with at least one key; it computes in bf16.
bool cudnn_chosen(Device device, int64_t key_len) {
  return configured_path() == AttentionPath::Cudnn && device.is_cuda() && key_len > 0;
}
// Sizes cuDNN 9's SDPA takes in both directions (its support surface): head_dim a
// multiple of 8 up to 128 (256 on Hopper forward only, which we do not use: the backward
// must follow the forward), and not a single query against a single key (refused by the
// backward). Anything else takes the GEMM path instead of an error after the forward.
bool cudnn_takes(int64_t query_len, int64_t key_len, int64_t head_dim) {
  return head_dim % 8 == 0 && head_dim <= 128 && !(query_len == 1 && key_len == 1);
}
bool use_cudnn(const Tensor& q, const Tensor& k) {
  return q.dtype() == DType::BFloat16 && cudnn_chosen(q.device(), k.size(2)) &&
         cudnn_takes(q.size(2), k.size(2), q.size(3));
}

// Our tensor-core tiles: chosen or by default (Auto), on CUDA, for bf16 operands of sizes
// the device takes.
bool use_tiles(const Tensor& q, const Tensor& k) {
  const AttentionPath path = configured_path();
  return (path == AttentionPath::Tiles || path == AttentionPath::Auto) && q.dtype() == DType::BFloat16 &&
         q.device().is_cuda() &&
         backend_for(q.device()).attention_tiles_supported(q.size(2), k.size(2), q.size(3));
}

// The GEMM path for float32/float64 operands on this device and key length.
bool gemm_path_for_float(Device device, int64_t key_len) {
  switch (configured_path()) {
    case AttentionPath::Fused: return false;
    case AttentionPath::Gemm: return true;
    case AttentionPath::Auto:
    case AttentionPath::Cudnn:
    case AttentionPath::Tiles: break;  // float32 operands: cuDNN's kernel and the tiles are bf16 only
  }
  return device.is_cuda() && key_len <= 256;
}

bool use_gemm_path(const Tensor& q, const Tensor& k) {
  // our fused kernels compute in one dtype: bf16 operands take the GEMMs, cuDNN or the tiles
  if (q.dtype() == DType::BFloat16) return !use_cudnn(q, k) && !use_tiles(q, k);
  return gemm_path_for_float(q.device(), k.size(2));
}

// The device's fused kernel, on a device whose kernel reads strided head views
// (Backend::attention_reads_views: the CPU's) -- then, as with the tiles, the operands are
// not gathered and the output and gradients are laid out heads-last.
bool fused_reads_views(const Tensor& q, const Tensor& k) {
  return q.dtype() != DType::BFloat16 && !use_gemm_path(q, k) && backend_for(q.device()).attention_reads_views();
}

// The dtype of scores, outputs and gradients: float32 for bf16 operands, else theirs.
DType result_dtype(const Tensor& q) { return q.dtype() == DType::BFloat16 ? DType::Float32 : q.dtype(); }

// A GEMM operand in the operands' dtype (bf16 in the mixed form), contiguous: one pass
// that both converts and gathers a transposed view.
Tensor gemm_operand(const Tensor& t, DType operand_dtype) {
  return t.dtype() == operand_dtype ? t.contiguous() : cast(t, operand_dtype);
}

// scale * q k^T: [B, H, Lq, Lk], in result_dtype(q); q and k contiguous.
Tensor attention_scores(const Tensor& q, const Tensor& k, double scale) {
  const int64_t b = q.size(0), h = q.size(1), lq = q.size(2), lk = k.size(2), d = q.size(3);
  Tensor scores = empty({b * h, lq, lk}, result_dtype(q), q.device());
  backend_for(q.device()).bmm(reshape(q, {b * h, lq, d}), reshape(k, {b * h, lk, d}), scores, false, true, scale, 0.0);
  return reshape(scores, {b, h, lq, lk});
}

// The probabilities of the masked scores in `dtype` (hidden keys 0, a row with no visible
// key all 0), and the rows' log-sum-exp into lse when it is defined: one row kernel.
Tensor masked_softmax(const Tensor& scores, const Tensor& keep_bytes, bool causal, DType dtype, Tensor lse = {}) {
  Tensor probs = empty(scores.shape(), dtype, scores.device());
  backend_for(scores.device()).attention_softmax(scores, keep_bytes, causal, probs, lse);
  return probs;
}

// [B, H, L, X] @ [B, H, X, Y] style batched product over the flattened B*H.
void batched_gemm(const Tensor& a, const Tensor& b, Tensor& out, bool trans_a, bool trans_b, double alpha) {
  const int64_t bh = a.size(0) * a.size(1);
  Tensor out3 = reshape(out, {bh, out.size(2), out.size(3)});
  backend_for(a.device()).bmm(reshape(a.contiguous(), {bh, a.size(2), a.size(3)}),
                              reshape(b.contiguous(), {bh, b.size(2), b.size(3)}), out3, trans_a, trans_b, alpha,
                              0.0);
}
}  // namespace

Tensor attention_key_mask(const Tensor& key_keep) {
  if (!key_keep.defined()) return key_keep;
  if (key_keep.dtype() == DType::UInt8) return key_keep.contiguous();
  return key_keep.to(DType::Bool).contiguous();  // itself when already contiguous bool
}

void set_attention_path(AttentionPath path) { configured_path() = path; }
AttentionPath attention_path() { return configured_path(); }
bool attention_uses_gemm(const Tensor& q, const Tensor& k) { return use_gemm_path(q, k); }
bool attention_uses_tiles(const Tensor& q, const Tensor& k) { return use_tiles(q, k); }
bool attention_reads_views(const Tensor& q, const Tensor& k) { return use_tiles(q, k) || fused_reads_views(q, k); }
bool attention_takes_bf16(Device device, int64_t key_len) {
  return key_len > 0 && (cudnn_chosen(device, key_len) || gemm_path_for_float(device, key_len));
}
bool attention_takes_bf16(const Tensor& q, const Tensor& k) {
  return q.dtype() == DType::BFloat16 ? k.size(2) > 0 : attention_takes_bf16(q.device(), k.size(2));
}

namespace {
// The dtype asked for an output (`what`) whose own dtype is `natural`: that, or bf16 from
// bf16 operands on the GEMM path or the tiles (which then write bf16, rounded once: no
// cast pass).
DType requested_dtype(const char* what, const Tensor& q, const Tensor& k, DType natural,
                      std::optional<DType> asked) {
  const DType dtype = asked.value_or(natural);
  MMS_CHECK(dtype == natural || (dtype == DType::BFloat16 && q.dtype() == DType::BFloat16 &&
                                 (use_gemm_path(q, k) || use_tiles(q, k))),
            what, " of ", dtype_name(q.dtype()), " operands is ", dtype_name(natural), " here, not ",
            dtype_name(dtype));
  return dtype;
}

// An empty [B, H, L, D] tensor laid out as [B, L, H, D] memory: what the tiles (and a
// fused kernel that reads views) write, so that the heads' merge back into [B, L, H * D]
// (a transpose and a reshape) is a view.
Tensor empty_heads_last(const Shape& shape, DType dtype, Device device) {
  Tensor memory = empty({shape[0], shape[2], shape[1], shape[3]}, dtype, device);
  return make_view(memory, shape, {memory.stride(0), memory.stride(2), memory.stride(1), memory.stride(3)}, 0);
}

// What a kernel that reads views (the tiles, the CPU's fused kernel) takes as it is: a
// [B, H, L, D] view whose last dim is contiguous.
bool last_dim_contiguous(const Tensor& t) { return t.stride(3) == 1 || t.size(3) == 1; }
// An operand of such a kernel: the view itself when it takes it, else a copy.
Tensor view_operand(const Tensor& t) { return last_dim_contiguous(t) ? t : t.contiguous(); }
// An operand of the device's fused kernel: as it reads them (views), else contiguous.
Tensor fused_operand(const Tensor& t, bool views) { return views ? view_operand(t) : t.contiguous(); }

// The tiles' backward into grads (views the kernel writes through their strides).
void tiles_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                    const Tensor& lse, const Tensor& key_keep, bool causal, double scale, AttentionGrads& grads) {
  MMS_CHECK(out.defined(), "attention backward: the tiles need the forward's output; keep the attention path "
                           "fixed between forward and backward");
  MMS_CHECK(out.dtype() == grads.grad_q.dtype(), "attention backward: the tiles write gradients in the output's "
            "dtype (", dtype_name(out.dtype()), "), not ", dtype_name(grads.grad_q.dtype()));
  const Tensor dout = view_operand(grad_out.to(out.dtype()));
  backend_for(q.device()).attention_tiles_backward(dout, view_operand(q), view_operand(k), view_operand(v),
                                                   view_operand(out), lse, attention_key_mask(key_keep), causal,
                                                   scale, grads.grad_q, grads.grad_k, grads.grad_v);
}

// The device's fused backward into grads: through views where the kernel reads them
// (fused_reads_views: grads may then be any views with a contiguous last dim, e.g. of
// one packed q/k/v gradient), else on contiguous copies into contiguous grads.
void fused_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                    const Tensor& lse, const Tensor& key_keep, bool causal, double scale, AttentionGrads& grads) {
  const bool views = fused_reads_views(q, k);
  backend_for(q.device()).attention_backward(
      fused_operand(grad_out.to(out.dtype()), views), fused_operand(q, views), fused_operand(k, views),
      fused_operand(v, views), fused_operand(out, views), lse, key_keep.defined() ? key_keep.contiguous() : key_keep,
      causal, scale, grads.grad_q, grads.grad_k, grads.grad_v);
}

void check_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_keep) {
  // float32 or float64, or bfloat16 operands (the mixed form)
  if (q.dtype() != DType::BFloat16) check_floating("attention", q);
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
                          bool causal, double scale, std::optional<DType> out_dtype) {
  check_attention(q, k, v, key_keep);
  AttentionResult result;
  const bool cudnn = use_cudnn(q, k);
  const DType dtype = result_dtype(q);
  // cuDNN writes a bf16 output; the GEMM path's PV GEMM float32, or bf16 when asked.
  const DType output_dtype = requested_dtype("attention: output", q, k, cudnn ? q.dtype() : dtype, out_dtype);
  result.lse = empty({q.size(0), q.size(1), q.size(2)}, dtype, q.device());
  if (use_tiles(q, k)) {
    result.out = empty_heads_last(q.shape(), output_dtype, q.device());
    backend_for(q.device()).attention_tiles(view_operand(q), view_operand(k), view_operand(v),
                                            attention_key_mask(key_keep), causal, scale, result.out, result.lse);
    return result;
  }
  const bool views = fused_reads_views(q, k);
  result.out = views ? empty_heads_last(q.shape(), output_dtype, q.device()) : empty(q.shape(), output_dtype, q.device());
  if (q.numel() == 0) return result;
  if (use_gemm_path(q, k) && k.size(2) > 0) {
    // The probabilities come out in the operands' dtype (bf16 in the mixed form: PV's
    // operand, rounded by the softmax kernel itself).
    Tensor scores = attention_scores(q.contiguous(), k.contiguous(), scale);
    Tensor probs = masked_softmax(scores, attention_key_mask(key_keep), causal, q.dtype(), result.lse);
    batched_gemm(probs, v, result.out, false, false, 1.0);
    return result;
  }
  MMS_CHECK(q.dtype() != DType::BFloat16 || cudnn, "attention: bf16 operands take the GEMM path or cuDNN's");
  backend_for(q.device()).attention(fused_operand(q, views), fused_operand(k, views), fused_operand(v, views),
                                    key_keep.defined() ? key_keep.contiguous() : key_keep, causal, scale,
                                    result.out, result.lse);
  return result;
}

AttentionGrads attention_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k,
                                  const Tensor& v, const Tensor& out, const Tensor& lse,
                                  const Tensor& key_keep, bool causal, double scale,
                                  std::optional<DType> grads_dtype) {
  check_attention(q, k, v, key_keep);
  MMS_CHECK(grad_out.shape() == q.shape(), "attention backward: gradient ",
            shape_str(grad_out.shape()), " does not match the output ", shape_str(q.shape()));
  AttentionGrads grads;
  const bool cudnn = use_cudnn(q, k);
  const DType dtype = result_dtype(q);  // scores, probabilities and their gradients
  // cuDNN writes bf16 gradients; the GEMM path's last three GEMMs float32, or bf16 when asked.
  const DType grad_dtype =
      requested_dtype("attention backward: gradients", q, k, cudnn ? q.dtype() : dtype, grads_dtype);
  if (use_tiles(q, k)) {
    grads.grad_q = empty_heads_last(q.shape(), grad_dtype, q.device());
    grads.grad_k = empty_heads_last(k.shape(), grad_dtype, k.device());
    grads.grad_v = empty_heads_last(v.shape(), grad_dtype, v.device());
    tiles_backward(grad_out, q, k, v, out, lse, key_keep, causal, scale, grads);
    return grads;
  }
  const bool views = fused_reads_views(q, k);
  auto grad_like = [&](const Tensor& t) {
    return views ? empty_heads_last(t.shape(), grad_dtype, t.device()) : empty(t.shape(), grad_dtype, t.device());
  };
  grads.grad_q = grad_like(q);
  grads.grad_k = grad_like(k);
  grads.grad_v = grad_like(v);
  if (q.numel() > 0 && k.numel() > 0 && use_gemm_path(q, k)) {
    // P = masked softmax(S) (hidden keys 0; the row kernel again, where exp(S - lse)
    // would take a broadcast subtraction and an exp pass);  dV = P^T dO;  dP = dO V^T;
    // dS = P * (dP - rowsum(dP * P))  (the softmax backward; rowsum(dP*P) = rowsum(dO*O));
    // dQ = scale dS K;  dK = scale dS^T Q.
    // Each operand is made contiguous (and bf16 in the mixed form) once, here: the
    // GEMMs below reuse them (q, k, v arrive as transposed head views otherwise).
    const DType operands = q.dtype();
    const Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
    const Tensor grad_out_c = gemm_operand(grad_out, operands);
    Tensor probs = masked_softmax(attention_scores(qc, kc, scale), attention_key_mask(key_keep), causal, dtype);
    const int64_t b = q.size(0), h = q.size(1), lq = q.size(2), lk = k.size(2);
    Tensor grad_probs = empty({b, h, lq, lk}, dtype, q.device());
    batched_gemm(grad_out_c, vc, grad_probs, false, true, 1.0);
    const Tensor grad_scores = gemm_operand(softmax_backward(grad_probs, probs, -1, false), operands);
    batched_gemm(grad_scores, kc, grads.grad_q, false, false, scale);
    batched_gemm(grad_scores, qc, grads.grad_k, true, false, scale);
    batched_gemm(gemm_operand(probs, operands), grad_out_c, grads.grad_v, true, false, 1.0);
  } else if (q.numel() > 0 && k.numel() > 0) {
    MMS_CHECK(q.dtype() != DType::BFloat16 || cudnn,
              "attention backward: bf16 operands take the GEMM path or cuDNN's");
    MMS_CHECK(out.defined(), "attention backward: the fused kernel needs the forward's output, which a GEMM-path "
                             "forward does not keep; keep the attention path fixed between forward and backward");
    fused_backward(grad_out, q, k, v, out, lse, key_keep, causal, scale, grads);
  } else {
    fill_(grads.grad_q, 0.0);
    fill_(grads.grad_k, 0.0);
    fill_(grads.grad_v, 0.0);
  }
  return grads;
}

void attention_backward_into(const Tensor& grad_out, const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& out, const Tensor& lse, const Tensor& key_keep, bool causal,
                             double scale, Tensor& grad_q, Tensor& grad_k, Tensor& grad_v) {
  check_attention(q, k, v, key_keep);
  const DType dtype = grad_q.dtype();
  MMS_CHECK(grad_k.dtype() == dtype && grad_v.dtype() == dtype && grad_q.shape() == q.shape() &&
                grad_k.shape() == k.shape() && grad_v.shape() == v.shape() && grad_out.shape() == q.shape(),
            "attention_backward_into: gradients ", shape_str(grad_q.shape()), ", ", shape_str(grad_k.shape()), ", ",
            shape_str(grad_v.shape()), " (and the output gradient ", shape_str(grad_out.shape()),
            ") must match q, k, v and share one dtype");
  // the operands' dtype, or float32 for bf16 operands (converted where a path writes bf16)
  MMS_CHECK(dtype == q.dtype() || dtype == result_dtype(q), "attention_backward_into: gradients of ",
            dtype_name(q.dtype()), " operands cannot be ", dtype_name(dtype));
  if (use_tiles(q, k)) {
    AttentionGrads into{grad_q, grad_k, grad_v};
    tiles_backward(grad_out, q, k, v, out, lse, key_keep, causal, scale, into);
    return;
  }
  if (fused_reads_views(q, k) && dtype == q.dtype() && q.numel() > 0 && k.numel() > 0 && out.defined() &&
      last_dim_contiguous(grad_q) && last_dim_contiguous(grad_k) && last_dim_contiguous(grad_v)) {
    AttentionGrads into{grad_q, grad_k, grad_v};  // written in place
    fused_backward(grad_out, q, k, v, out, lse, key_keep, causal, scale, into);
    return;
  }
  // The GEMM path writes bf16 gradients itself when asked; otherwise copy_ converts.
  const bool bf16_written = dtype == DType::BFloat16 && q.dtype() == DType::BFloat16 && use_gemm_path(q, k);
  const AttentionGrads grads = attention_backward(grad_out, q, k, v, out, lse, key_keep, causal, scale,
                                                  bf16_written ? std::optional(dtype) : std::nullopt);
  copy_(grad_q, grads.grad_q);
  copy_(grad_k, grads.grad_k);
  copy_(grad_v, grads.grad_v);
}

}  // namespace mms::ops
