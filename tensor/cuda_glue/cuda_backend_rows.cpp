// CudaBackend: row-wise ops (reductions, softmax, layer norm), batched GEMM and the
// linear layer's fused GEMM + epilogue (cuda/reduce.h, cuda/softmax.h, cuda/layernorm.h,
// cuda/gemm.h, cuda/gemm_lt.h).
#include <limits>

#include "cuda/gemm.h"
#include "cuda/gemm_lt.h"
#include "cuda/layernorm.h"
#include "cuda/reduce.h"
#include "cuda/runtime.h"
#include "cuda/softmax.h"
#include "tensor/cuda_glue/cuda_glue.h"

namespace mms {

using namespace cuda_glue;

namespace {

struct Rows {
  int64_t rows, cols;
};

// [..., cols] viewed as [rows, cols]; a 0-d tensor is one row of one element.
Rows rows_of(const Tensor& x) {
  if (x.dim() == 0) return {1, 1};
  const Shape leading(x.shape().begin(), x.shape().end() - 1);
  return {shape_numel(leading), x.size(-1)};
}

}  // namespace

void CudaBackend::reduce_last(ReduceOp op, const Tensor& x, Tensor& out) {
  const char* name = reduce_op_name(op);
  check_f32(name, "input", x);
  check_contiguous(name, "input", x);
  check_cuda(name, "output", out);
  const DType expected = op == ReduceOp::ArgMax ? DType::Int64 : DType::Float32;
  MMS_CHECK(out.dtype() == expected, name, ": output is ", dtype_name(out.dtype()), ", expected ",
            dtype_name(expected));
  const Rows r = rows_of(x);
  MMS_CHECK(out.numel() == r.rows, name, ": output has ", out.numel(), " elements for ", r.rows, " rows");
  cuda::reduce_last_f32(static_cast<cuda::ReduceKind>(op), static_cast<const float*>(x.raw_data()), r.rows,
                        r.cols, out.raw_data(), cuda::stream());
}

void CudaBackend::softmax_last(const Tensor& x, Tensor& out, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  check_f32(name, "input", x);
  check_contiguous(name, "input", x);
  check_f32(name, "output", out);
  check_shape(name, "output", out, x.shape());
  const Rows r = rows_of(x);
  cuda::softmax_forward_f32(static_cast<const float*>(x.raw_data()), static_cast<float*>(out.raw_data()),
                            r.rows, r.cols, log, cuda::stream());
}

void CudaBackend::softmax_last_backward(const Tensor& grad_out, const Tensor& y, Tensor& grad_in, bool log) {
  const char* name = log ? "log_softmax_backward" : "softmax_backward";
  check_f32(name, "grad_out", grad_out);
  check_f32(name, "y", y);
  check_f32(name, "grad_in", grad_in);
  check_contiguous(name, "grad_out", grad_out);
  check_contiguous(name, "y", y);
  check_shape(name, "grad_out", grad_out, y.shape());
  check_shape(name, "grad_in", grad_in, y.shape());
  const Rows r = rows_of(y);
  cuda::softmax_backward_f32(static_cast<const float*>(grad_out.raw_data()), static_cast<const float*>(y.raw_data()),
                             static_cast<float*>(grad_in.raw_data()), r.rows, r.cols, log, cuda::stream());
}

void CudaBackend::attention_softmax(const Tensor& scores, const Tensor& key_keep, bool causal, Tensor& probs,
                                    Tensor& lse) {
  const char* name = "attention_softmax";
  check_f32(name, "scores", scores);
  check_contiguous(name, "scores", scores);
  MMS_CHECK(scores.dim() == 4, name, ": scores must be [B, H, Lq, Lk], got ", shape_str(scores.shape()));
  const int64_t batch = scores.size(0), heads = scores.size(1), lq = scores.size(2), lk = scores.size(3);
  check_cuda(name, "probs", probs);
  check_contiguous(name, "probs", probs);
  check_shape(name, "probs", probs, scores.shape());
  MMS_CHECK(probs.dtype() == DType::Float32 || probs.dtype() == DType::BFloat16, name,
            ": probs must be float32 or bfloat16, got ", dtype_name(probs.dtype()));
  if (lse.defined()) {
    check_f32(name, "lse", lse);
    check_contiguous(name, "lse", lse);
    check_shape(name, "lse", lse, {batch, heads, lq});
    if (lk == 0) fill(lse, -std::numeric_limits<double>::infinity());  // no keys: nothing is visible
  }
  const Tensor keep = key_keep_bytes(name, key_keep, batch, lk);
  cuda::attention_softmax_f32(static_cast<const float*>(scores.raw_data()),
                              keep.defined() ? static_cast<const uint8_t*>(keep.raw_data()) : nullptr,
                              probs.raw_data(), probs.dtype() == DType::BFloat16, f32_or_null(lse), batch, heads,
                              lq, lk, causal, cuda::stream());
}

void CudaBackend::layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, Tensor& y,
                             Tensor& mean, Tensor& rstd) {
  const char* name = "layer_norm";
  check_f32(name, "input", x);
  check_contiguous(name, "input", x);
  const Rows r = rows_of(x);
  for (const Tensor* param : {&weight, &bias}) {
    if (!param->defined()) continue;
    check_f32(name, param == &weight ? "weight" : "bias", *param);
    check_contiguous(name, param == &weight ? "weight" : "bias", *param);
    MMS_CHECK(param->numel() == r.cols, name, ": ", param == &weight ? "weight" : "bias", " has ",
              param->numel(), " elements for rows of ", r.cols);
  }
  // y float32, or bf16 (autocast's bf16 activations)
  const bool bf16_y = y.defined() && y.dtype() == DType::BFloat16;
  if (bf16_y) check_cuda(name, "y", y);
  else check_f32(name, "y", y);
  check_contiguous(name, "y", y);
  check_shape(name, "y", y, x.shape());
  check_f32(name, "mean", mean);
  check_f32(name, "rstd", rstd);
  MMS_CHECK(mean.numel() == r.rows && rstd.numel() == r.rows, name, ": mean/rstd need ", r.rows, " elements");
  const float* xs = static_cast<const float*>(x.raw_data());
  float* means = static_cast<float*>(mean.raw_data());
  float* rstds = static_cast<float*>(rstd.raw_data());
  if (bf16_y)
    cuda::layer_norm_forward_f32_bf16(xs, f32_or_null(weight), f32_or_null(bias), static_cast<uint16_t*>(y.raw_data()),
                                      means, rstds, r.rows, r.cols, float(eps), cuda::stream());
  else
    cuda::layer_norm_forward_f32(xs, f32_or_null(weight), f32_or_null(bias), static_cast<float*>(y.raw_data()), means,
                                 rstds, r.rows, r.cols, float(eps), cuda::stream());
}

void CudaBackend::layer_norm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight,
                                      const Tensor& mean, const Tensor& rstd, const Tensor& grad_x_addend,
                                      Tensor& grad_x, Tensor& grad_weight, Tensor& grad_bias) {
  const char* name = "layer_norm_backward";
  // grad_y float32, or bf16 (the gradient of a bf16 y)
  const bool bf16_grad = grad_y.defined() && grad_y.dtype() == DType::BFloat16;
  if (bf16_grad) check_cuda(name, "grad_y", grad_y);
  else check_f32(name, "grad_y", grad_y);
  check_f32(name, "input", x);
  check_contiguous(name, "grad_y", grad_y);
  check_contiguous(name, "input", x);
  check_shape(name, "grad_y", grad_y, x.shape());
  const Rows r = rows_of(x);
  if (weight.defined()) {
    check_f32(name, "weight", weight);
    check_contiguous(name, "weight", weight);
    MMS_CHECK(weight.numel() == r.cols, name, ": weight has ", weight.numel(), " elements for rows of ", r.cols);
  }
  check_f32(name, "mean", mean);
  check_f32(name, "rstd", rstd);
  MMS_CHECK(mean.numel() == r.rows && rstd.numel() == r.rows, name, ": mean/rstd need ", r.rows, " elements");
  if (grad_x.defined()) {
    check_f32(name, "grad_x", grad_x);
    check_contiguous(name, "grad_x", grad_x);
    check_shape(name, "grad_x", grad_x, x.shape());
  }
  if (grad_x_addend.defined()) {
    MMS_CHECK(grad_x.defined(), name, ": grad_x_addend is added to grad_x, which is not asked for");
    check_f32(name, "grad_x_addend", grad_x_addend);
    check_contiguous(name, "grad_x_addend", grad_x_addend);
    check_shape(name, "grad_x_addend", grad_x_addend, x.shape());
    MMS_CHECK(grad_x_addend.raw_data() != grad_x.raw_data(), name, ": grad_x_addend must not alias grad_x");
  }
  for (const Tensor* g : {&grad_weight, &grad_bias}) {
    if (!g->defined()) continue;
    check_f32(name, "parameter gradient", *g);
    MMS_CHECK(g->numel() == r.cols, name, ": parameter gradient has ", g->numel(), " elements for rows of ", r.cols);
  }
  const float* xs = static_cast<const float*>(x.raw_data());
  const float* means = static_cast<const float*>(mean.raw_data());
  const float* rstds = static_cast<const float*>(rstd.raw_data());
  const float* addend = f32_or_null(grad_x_addend);
  if (bf16_grad)
    cuda::layer_norm_backward_bf16_grad(static_cast<const uint16_t*>(grad_y.raw_data()), xs, f32_or_null(weight),
                                        means, rstds, addend, f32_or_null(grad_x), f32_or_null(grad_weight),
                                        f32_or_null(grad_bias), r.rows, r.cols, cuda::stream());
  else
    cuda::layer_norm_backward_f32(static_cast<const float*>(grad_y.raw_data()), xs, f32_or_null(weight), means, rstds,
                                  addend, f32_or_null(grad_x), f32_or_null(grad_weight), f32_or_null(grad_bias),
                                  r.rows, r.cols, cuda::stream());
}

void CudaBackend::bmm(const Tensor& a, const Tensor& b, Tensor& out, bool trans_a, bool trans_b, double alpha,
                      double beta) {
  const char* name = "bmm";
  // float32 throughout, or the mixed forms of autocast: bf16 a and b, float32 out (or
  // bf16 out: autocast's bf16 activations)
  const bool bf16_operands = a.defined() && b.defined() && a.dtype() == DType::BFloat16 &&
                             b.dtype() == DType::BFloat16;
  const bool bf16_out = bf16_operands && out.defined() && out.dtype() == DType::BFloat16;
  if (bf16_operands) {
    check_cuda(name, "a", a);
    check_cuda(name, "b", b);
  } else {
    check_f32(name, "a", a);
    check_f32(name, "b", b);
  }
  if (bf16_out) check_cuda(name, "out", out);
  else check_f32(name, "out", out);
  check_contiguous(name, "a", a);
  check_contiguous(name, "b", b);
  check_contiguous(name, "out", out);
  MMS_CHECK(a.dim() == 3 && b.dim() == 3 && out.dim() == 3, name, ": expected 3-D operands, got a ",
            shape_str(a.shape()), ", b ", shape_str(b.shape()), ", out ", shape_str(out.shape()));
  const int64_t batch = out.size(0), m = out.size(1), n = out.size(2);
  const int64_t k = trans_a ? a.size(1) : a.size(2);
  const int64_t a_m = trans_a ? a.size(2) : a.size(1);
  const int64_t b_k = trans_b ? b.size(2) : b.size(1);
  const int64_t b_n = trans_b ? b.size(1) : b.size(2);
  MMS_CHECK(a_m == m && b_k == k && b_n == n && (a.size(0) == batch || a.size(0) == 1) &&
                (b.size(0) == batch || b.size(0) == 1),
            name, ": shapes a ", shape_str(a.shape()), (trans_a ? "^T" : ""), ", b ", shape_str(b.shape()),
            (trans_b ? "^T" : ""), " do not give out ", shape_str(out.shape()));
  const int64_t stride_a = a.size(0) == 1 ? 0 : m * k;
  const int64_t stride_b = b.size(0) == 1 ? 0 : k * n;
  if (bf16_out) {
    if (k == 0) {  // an empty product: out = beta * out, i.e. zeros (ops never ask beta != 0 here)
      MMS_CHECK(beta == 0.0, name, ": an empty bf16 product with beta != 0 is not supported");
      fill(out, 0.0);
      return;
    }
    cuda::gemm_strided_batched_bf16(trans_a, trans_b, batch, m, n, k, float(alpha),
                                    static_cast<const uint16_t*>(a.raw_data()), stride_a,
                                    static_cast<const uint16_t*>(b.raw_data()), stride_b, float(beta),
                                    static_cast<uint16_t*>(out.raw_data()), m * n, cuda::stream());
    return;
  }
  if (bf16_operands) {
    cuda::gemm_strided_batched_bf16_f32(trans_a, trans_b, batch, m, n, k, float(alpha),
                                        static_cast<const uint16_t*>(a.raw_data()), stride_a,
                                        static_cast<const uint16_t*>(b.raw_data()), stride_b, float(beta),
                                        static_cast<float*>(out.raw_data()), m * n, cuda::stream());
    return;
  }
  cuda::gemm_strided_batched_f32(trans_a, trans_b, batch, m, n, k, float(alpha),
                                 static_cast<const float*>(a.raw_data()), stride_a,
                                 static_cast<const float*>(b.raw_data()), stride_b, float(beta),
                                 static_cast<float*>(out.raw_data()), m * n, cuda::stream());
}

bool CudaBackend::linear_epilogue(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                  LinearEpilogue epilogue, Tensor& out, Tensor& pre_activation) {
  const char* name = epilogue == LinearEpilogue::Bias ? "linear" : "linear_gelu_tanh";
  if (!cuda::cublaslt_enabled()) return false;  // MMS_CUBLASLT=0: the bmm + bias-pass path
  check_cuda(name, "x", x);
  check_cuda(name, "weight", weight);
  check_cuda(name, "bias", bias);
  check_cuda(name, "out", out);
  // float32 throughout, autocast's bf16 x and weight with float32 bias and output, or
  // everything bf16 (autocast's bf16 activations); anything else has no fused path
  const bool bf16_operands = x.dtype() == DType::BFloat16 && weight.dtype() == DType::BFloat16;
  const bool f32_operands = x.dtype() == DType::Float32 && weight.dtype() == DType::Float32;
  if (!bf16_operands && !f32_operands) return false;
  const DType out_dtype = out.dtype();
  if (out_dtype != DType::Float32 && !(bf16_operands && out_dtype == DType::BFloat16)) return false;
  if (bias.dtype() != out_dtype) return false;
  if (pre_activation.defined() && pre_activation.dtype() != out_dtype) return false;
  check_contiguous(name, "x", x);
  check_contiguous(name, "weight", weight);
  check_contiguous(name, "bias", bias);
  check_contiguous(name, "out", out);
  MMS_CHECK(x.dim() == 2 && weight.dim() == 2 && x.size(1) == weight.size(1), name, ": x ", shape_str(x.shape()),
            " and weight ", shape_str(weight.shape()), " are not [M, K] and [N, K]");
  const int64_t m = x.size(0), k = x.size(1), n = weight.size(0);
  check_shape(name, "bias", bias, {n});
  check_shape(name, "out", out, {m, n});
  MMS_CHECK(!pre_activation.defined() || epilogue == LinearEpilogue::GeluTanhBias, name,
            ": only the GELU epilogue writes a pre-activation");
  void* pre = nullptr;
  if (pre_activation.defined()) {
    check_cuda(name, "pre_activation", pre_activation);
    check_contiguous(name, "pre_activation", pre_activation);
    check_shape(name, "pre_activation", pre_activation, {m, n});
    pre = pre_activation.raw_data();
  }
  const cuda::LtEpilogue lt_epilogue =
      epilogue == LinearEpilogue::Bias ? cuda::LtEpilogue::Bias : cuda::LtEpilogue::GeluTanhBias;
  if (out_dtype == DType::BFloat16)
    return cuda::linear_lt_bf16(lt_epilogue, m, n, k, static_cast<const uint16_t*>(x.raw_data()),
                                static_cast<const uint16_t*>(weight.raw_data()),
                                static_cast<const uint16_t*>(bias.raw_data()), static_cast<uint16_t*>(out.raw_data()),
                                static_cast<uint16_t*>(pre), cuda::stream());
  const float* bias_data = static_cast<const float*>(bias.raw_data());
  float* out_data = static_cast<float*>(out.raw_data());
  if (bf16_operands)
    return cuda::linear_lt_bf16_f32(lt_epilogue, m, n, k, static_cast<const uint16_t*>(x.raw_data()),
                                    static_cast<const uint16_t*>(weight.raw_data()), bias_data, out_data,
                                    static_cast<float*>(pre), cuda::stream());
  return cuda::linear_lt_f32(lt_epilogue, m, n, k, static_cast<const float*>(x.raw_data()),
                             static_cast<const float*>(weight.raw_data()), bias_data, out_data, static_cast<float*>(pre),
                             cuda::stream());
}

bool CudaBackend::may_fuse_linear_weight_grad(DType operands) const {
  return cuda::cublaslt_enabled() && (operands == DType::Float32 || operands == DType::BFloat16);
}

bool CudaBackend::linear_weight_grad(const Tensor& grad_out, const Tensor& x, Tensor& grad_weight,
                                     Tensor& grad_bias) {
  const char* name = "linear_weight_grad";
  if (!cuda::cublaslt_enabled()) return false;  // MMS_CUBLASLT=0: bmm + a reduction
  check_cuda(name, "grad_out", grad_out);
  check_cuda(name, "x", x);
  check_cuda(name, "grad_weight", grad_weight);
  check_cuda(name, "grad_bias", grad_bias);
  // float32 or bf16 operands (autocast's mixed GEMM), float32 gradients; nothing else fused
  const bool bf16_operands = grad_out.dtype() == DType::BFloat16 && x.dtype() == DType::BFloat16;
  const bool f32_operands = grad_out.dtype() == DType::Float32 && x.dtype() == DType::Float32;
  if (!bf16_operands && !f32_operands) return false;
  if (grad_weight.dtype() != DType::Float32 || grad_bias.dtype() != DType::Float32) return false;
  check_contiguous(name, "grad_out", grad_out);
  check_contiguous(name, "x", x);
  check_contiguous(name, "grad_weight", grad_weight);
  check_contiguous(name, "grad_bias", grad_bias);
  MMS_CHECK(grad_out.dim() == 2 && x.dim() == 2 && grad_out.size(0) == x.size(0), name, ": grad_out ",
            shape_str(grad_out.shape()), " and x ", shape_str(x.shape()), " are not [M, N] and [M, K]");
  const int64_t m = x.size(0), k = x.size(1), n = grad_out.size(1);
  check_shape(name, "grad_weight", grad_weight, {n, k});
  check_shape(name, "grad_bias", grad_bias, {n});
  float* weight_data = static_cast<float*>(grad_weight.raw_data());
  float* bias_data = static_cast<float*>(grad_bias.raw_data());
  if (bf16_operands)
    return cuda::linear_weight_grad_lt_bf16(m, n, k, static_cast<const uint16_t*>(grad_out.raw_data()),
                                            static_cast<const uint16_t*>(x.raw_data()), weight_data, bias_data,
                                            cuda::stream());
  return cuda::linear_weight_grad_lt_f32(m, n, k, static_cast<const float*>(grad_out.raw_data()),
                                         static_cast<const float*>(x.raw_data()), weight_data, bias_data,
                                         cuda::stream());
}

}  // namespace mms
