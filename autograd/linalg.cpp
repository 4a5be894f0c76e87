// matmul and linear with their derivatives:
//   C = A B      =>  dA = dC B^T,  dB = A^T dC  (summed over broadcast batch dims)
//   y = x W^T + b =>  dx = dy W,   dW = dy^T x,  db = sum of dy over rows
//   y = gelu_tanh(x W^T + b) (fused on CUDA: one cuBLASLt GEMM with a GELU epilogue)
//                 =>  dh = dy * gelu_tanh'(h), then linear's formulas with dh
//
// Mixed precision (autograd/autocast.h): under an AutocastGuard(bfloat16), or when both
// operands already are bfloat16, the GEMM operands are bf16 (float32 ones are cast here,
// and the bf16 copies are what the backward keeps), every GEMM is bf16 x bf16 -> float32,
// and the backward casts dC / dy to bf16 for its two GEMMs. Each input's gradient is
// returned in that input's dtype, so float32 parameters get float32 gradients. The bias
// stays float32; its gradient is summed, with float32 accumulation, from the bf16 dy the
// backward's GEMMs read (in the weight gradient's GEMM epilogue on CUDA), as torch's
// autocast sums the bf16 gradient of its bf16 output. A linear asked for a bf16 output
// (AutocastOutput::BFloat16, autograd/api.h) returns bf16 with a bf16 copy of the bias;
// its dy then arrives in bf16 (no cast).
#include "autograd/api.h"
#include "autograd/autocast.h"

namespace mms {

namespace {
using Grads = std::vector<Tensor>;

bool castable_to_bf16(const Tensor& t) {
  return t.dtype() == DType::Float32 || t.dtype() == DType::BFloat16;
}

// Whether the GEMM of a and b runs in bf16 mixed precision.
bool mixed_gemm(const Tensor& a, const Tensor& b) {
  if (a.dtype() == DType::BFloat16 && b.dtype() == DType::BFloat16) return true;
  return autocast_dtype() == DType::BFloat16 && castable_to_bf16(a) && castable_to_bf16(b);
}

// t itself when already bfloat16, else a bf16 copy.
Tensor to_bf16(const Tensor& t) { return t.to(DType::BFloat16); }

// A gradient in its input's dtype (the mixed GEMMs produce float32).
Tensor in_dtype(const Tensor& grad, DType dtype) {
  return !grad.defined() || grad.dtype() == dtype ? grad : ops::cast(grad, dtype);
}

Tensor matmul_2d_or_more(const Tensor& a, const Tensor& b) {
  const bool mixed = mixed_gemm(a, b);
  const DType a_dtype = a.dtype(), b_dtype = b.dtype();
  Tensor as = saved(mixed ? to_bf16(a) : a), bs = saved(mixed ? to_bf16(b) : b);
  return record("matmul", ops::matmul(as, bs), {a, b},
                [as, bs, mixed, a_dtype, b_dtype](const Tensor& g_out, const std::vector<bool>& needs) {
    const Tensor g = mixed ? to_bf16(g_out) : g_out;
    Tensor ga, gb;
    if (needs[0]) ga = in_dtype(ops::sum_to(ops::matmul(g, ops::transpose(bs, -1, -2)), as.shape()), a_dtype);
    if (needs[1]) gb = in_dtype(ops::sum_to(ops::matmul(ops::transpose(as, -1, -2), g), bs.shape()), b_dtype);
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

namespace {
// The operands of linear as its GEMM sees them (bf16 copies under autocast), and the
// dtypes its gradients go back in.
struct LinearInputs {
  Tensor xs, ws;  // saved for the backward
  bool mixed = false;
  DType x_dtype = DType::Float32, w_dtype = DType::Float32, b_dtype = DType::Float32;
};

LinearInputs linear_inputs(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  LinearInputs in;
  in.mixed = mixed_gemm(x, weight);
  in.x_dtype = x.dtype();
  in.w_dtype = weight.dtype();
  in.b_dtype = bias.defined() ? bias.dtype() : DType::Float32;
  in.xs = saved(in.mixed ? to_bf16(x) : x);
  in.ws = saved(in.mixed ? to_bf16(weight) : weight);
  return in;
}

// The bias the GEMM adds: the mixed GEMM accumulates onto a float32 bias.
Tensor gemm_bias(const LinearInputs& in, const Tensor& bias) {
  return in.mixed && bias.defined() ? in_dtype(bias, DType::Float32) : bias;
}

// dx = g W, dW = g^T x, db = sum of g over rows, for g = dL/d(x W^T + b). A bf16 input
// (an activation) gets its bf16 gradient straight from the GEMM, rounded once. dW and db
// come from one GEMM where the device sums db in its epilogue (ops::linear_weight_grad),
// so db is summed from the GEMM's operand: g in bf16 under autocast, as torch's autocast
// does (it sums the bf16 gradient of its bf16 output), accumulated and kept in float32.
Grads linear_backward(const LinearInputs& in, const Tensor& g, const std::vector<bool>& needs) {
  const int64_t out_features = in.ws.size(0), in_features = in.ws.size(1);
  Tensor g2 = ops::reshape(g, {-1, out_features});
  const Tensor g2_gemm = in.mixed ? to_bf16(g2) : g2;
  const bool bf16_gx = in.mixed && in.x_dtype == DType::BFloat16;
  Tensor gx, gw, gb;
  if (needs[0])
    gx = in_dtype(ops::reshape(ops::matmul(g2_gemm, in.ws, bf16_gx ? std::optional(DType::BFloat16) : std::nullopt),
                               in.xs.shape()),
                  in.x_dtype);
  if (needs[1]) {
    const ops::LinearWeightGrads grads =
        ops::linear_weight_grad(g2_gemm, ops::reshape(in.xs, {-1, in_features}), needs[2]);
    gw = in_dtype(grads.weight, in.w_dtype);
    if (needs[2]) gb = in_dtype(grads.bias, in.b_dtype);
  } else if (needs[2]) {
    gb = in_dtype(ops::linear_bias_grad(g2_gemm), in.b_dtype);
  }
  return Grads{gx, gw, gb};
}
}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias, AutocastOutput output) {
  const LinearInputs in = linear_inputs(x, weight, bias);
  // A bf16 output takes a bf16 bias, as torch's autocast casts it: the epilogue adds it
  // to the float32 accumulator and rounds once.
  const bool bf16_output = in.mixed && output == AutocastOutput::BFloat16 && bf16_activations_enabled();
  Tensor y = bf16_output ? ops::linear(in.xs, in.ws, bias.defined() ? bias.to(DType::BFloat16) : bias, DType::BFloat16)
                         : ops::linear(in.xs, in.ws, gemm_bias(in, bias));
  return record("linear", y, {x, weight, bias},
                [in](const Tensor& g, const std::vector<bool>& needs) { return linear_backward(in, g, needs); });
}

// y = gelu_tanh(h), h = x W^T + b: dh = dy * gelu_tanh'(h), then linear's formulas. h is
// the GEMM epilogue's second output on CUDA (kept only when a gradient is needed).
Tensor linear_gelu_tanh(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const LinearInputs in = linear_inputs(x, weight, bias);
  const bool keep_pre_activation = needs_graph({x, weight, bias});
  ops::LinearGeluResult result = ops::linear_gelu_tanh(in.xs, in.ws, gemm_bias(in, bias), keep_pre_activation);
  const Tensor h = saved(result.pre_activation);
  return record("linear_gelu_tanh", result.y, {x, weight, bias},
                [in, h](const Tensor& g, const std::vector<bool>& needs) {
    return linear_backward(in, ops::unary_backward(UnaryOp::GeluTanh, g, h), needs);
  });
}

}  // namespace mms
