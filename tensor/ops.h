// Raw (non-differentiable) tensor operations: check shapes, dtypes and devices,
// broadcast, allocate the output, and call the device's kernel (tensor/backend.h).
// Autograd's differentiable ops (autograd/api.h) are written on top of these; the
// backward formulas use them too.
#pragma once

#include <optional>
#include <tuple>
#include <vector>

#include "tensor/backend.h"
#include "tensor/tensor.h"
#include "tensor/view.h"

namespace mms::ops {

// ---- copies --------------------------------------------------------------------
void copy_(Tensor& dst, const Tensor& src);  // same shape (src may broadcast); converts dtype
void fill_(Tensor& dst, double value);       // any strides
Tensor cast(const Tensor& x, DType dtype);   // always a new contiguous tensor

// ---- elementwise ---------------------------------------------------------------
Tensor unary(UnaryOp op, const Tensor& x, double alpha = 0.0, double beta = 0.0);
Tensor unary_backward(UnaryOp op, const Tensor& grad_out, const Tensor& x, double alpha = 0.0,
                      double beta = 0.0);
// Both operands must share dtype and device; shapes broadcast.
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// Inverted dropout in one pass: x * (u >= p ? 1/(1-p) : 0), u the Philox uniform that
// rand(x.shape(), seed, offset) would give each element (tensor/ops/dropout.cpp). x any
// strides, float32/float64, p in [0, 1]. Its own backward: the same call on the gradient.
Tensor dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset);

inline Tensor neg(const Tensor& x) { return unary(UnaryOp::Neg, x); }
inline Tensor exp(const Tensor& x) { return unary(UnaryOp::Exp, x); }
inline Tensor log(const Tensor& x) { return unary(UnaryOp::Log, x); }
inline Tensor sqrt(const Tensor& x) { return unary(UnaryOp::Sqrt, x); }
inline Tensor rsqrt(const Tensor& x) { return unary(UnaryOp::Rsqrt, x); }
inline Tensor abs(const Tensor& x) { return unary(UnaryOp::Abs, x); }
inline Tensor sign(const Tensor& x) { return unary(UnaryOp::Sign, x); }
inline Tensor square(const Tensor& x) { return unary(UnaryOp::Square, x); }
inline Tensor tanh(const Tensor& x) { return unary(UnaryOp::Tanh, x); }
inline Tensor sigmoid(const Tensor& x) { return unary(UnaryOp::Sigmoid, x); }
inline Tensor relu(const Tensor& x) { return unary(UnaryOp::Relu, x); }
inline Tensor add_scalar(const Tensor& x, double s) { return unary(UnaryOp::AddScalar, x, s); }
inline Tensor mul_scalar(const Tensor& x, double s) { return unary(UnaryOp::MulScalar, x, s); }
inline Tensor pow_scalar(const Tensor& x, double s) { return unary(UnaryOp::PowScalar, x, s); }
Tensor clamp(const Tensor& x, std::optional<double> low, std::optional<double> high);

inline Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Add, a, b); }
inline Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Sub, a, b); }
inline Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Mul, a, b); }
inline Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Div, a, b); }

// ---- reductions ----------------------------------------------------------------
// dims empty = all dims. Negative dims allowed.
Tensor reduce(ReduceOp op, const Tensor& x, std::vector<int64_t> dims, bool keepdim);
inline Tensor sum(const Tensor& x, std::vector<int64_t> dims = {}, bool keepdim = false) {
  return reduce(ReduceOp::Sum, x, std::move(dims), keepdim);
}
Tensor mean(const Tensor& x, std::vector<int64_t> dims = {}, bool keepdim = false);
inline Tensor amax(const Tensor& x, std::vector<int64_t> dims = {}, bool keepdim = false) {
  return reduce(ReduceOp::Max, x, std::move(dims), keepdim);
}
inline Tensor logsumexp(const Tensor& x, std::vector<int64_t> dims, bool keepdim = false) {
  return reduce(ReduceOp::LogSumExp, x, std::move(dims), keepdim);
}
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
// Sums a broadcast result back down to `shape` (the inverse of expand).
Tensor sum_to(const Tensor& x, const Shape& shape);

// ---- normalisation -------------------------------------------------------------
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);
// y is the forward output (softmax probabilities, or log-probabilities when log).
Tensor softmax_backward(const Tensor& grad_out, const Tensor& y, int64_t dim, bool log);

struct LayerNormResult { Tensor y, mean, rstd; };
// Normalises over the last dim; weight/bias optional (undefined Tensor). out_dtype
// bfloat16 writes y as bf16 from a float32 x (rounded once; autocast's bf16 activations),
// the statistics staying float32.
LayerNormResult layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                           std::optional<DType> out_dtype = std::nullopt);
struct LayerNormGrads {
  Tensor grad_x, grad_weight, grad_bias;
  bool addend_folded = false;  // grad_x includes grad_x_addend
};
// grad_y in x's dtype, or bf16 for a float32 x (the gradient of a bf16 y); the
// gradients are in x's dtype. grad_x_addend (optional): a gradient x already has from
// another consumer; where it has x's shape and dtype and is contiguous it is added to
// grad_x in the same pass (addend_folded), otherwise it is left to the caller.
LayerNormGrads layer_norm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight,
                                   const Tensor& mean, const Tensor& rstd, bool need_weight_grads,
                                   const Tensor& grad_x_addend = Tensor());

// ---- linear algebra ------------------------------------------------------------
// NumPy matmul semantics: 1-D operands are promoted and squeezed back, batch dims broadcast.
// Operands share one dtype; two bfloat16 operands give a float32 result, accumulated in
// float32 (mixed precision: what autocast runs, autograd/autocast.h), or a bfloat16 one
// (still accumulated in float32, rounded once) when out_dtype asks for it.
Tensor matmul(const Tensor& a, const Tensor& b, std::optional<DType> out_dtype = std::nullopt);
// x [..., in] @ weight[out, in]^T + bias[out]. bfloat16 x and weight give a float32
// output, or with out_dtype = bfloat16 a bfloat16 one (autocast's bf16 activations); the
// bias (optional) has the output's dtype. On CUDA the bias is added in the GEMM's
// epilogue (cuBLASLt, cuda/gemm_lt.h) unless MMS_CUBLASLT=0; otherwise the output is
// pre-filled with the bias and the GEMM accumulates onto it.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias, std::optional<DType> out_dtype = std::nullopt);
// y = gelu_tanh(linear(x, weight, bias)), the up-projection of an MLP whose activation is
// the tanh-approximate GELU: one cuBLASLt GEMM with a GELU epilogue on CUDA where it
// applies, linear then the elementwise GELU elsewhere. With keep_pre_activation, also
// returns h = linear(x, weight, bias), the GELU's input the backward needs.
struct LinearGeluResult { Tensor y, pre_activation; };
LinearGeluResult linear_gelu_tanh(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                  bool keep_pre_activation);
// The weight and bias gradients of linear, for grad_out [rows, out] (the output's
// gradient) and x [rows, in], both float32 (or float64), or both bfloat16 with float32
// gradients (autocast's mixed GEMM):
//   weight = grad_out^T @ x  [out, in];   bias = sum of grad_out over rows  [out]
// (bias only with with_bias). On CUDA one GEMM whose epilogue sums the bias gradient
// (cuBLASLt, cuda/gemm_lt.h) unless MMS_CUBLASLT=0; elsewhere the GEMM and a reduction.
struct LinearWeightGrads { Tensor weight, bias; };
LinearWeightGrads linear_weight_grad(const Tensor& grad_out, const Tensor& x, bool with_bias);
// The bias gradient alone: grad_out [rows, out] summed over rows, in float32 for a
// bfloat16 grad_out (a mixed GEMV: float32 accumulation), in its own dtype otherwise.
Tensor linear_bias_grad(const Tensor& grad_out);

// ---- indexing ------------------------------------------------------------------
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);  // index 1-D Int64
// Returns zeros(shape of x) with grad rows added at index (the backward of index_select).
Tensor index_add(const Shape& shape, int64_t dim, const Tensor& index, const Tensor& grad);
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);  // index same rank as x
Tensor scatter_add(const Shape& shape, int64_t dim, const Tensor& index, const Tensor& grad);
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim);
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim);  // views
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim);      // views
Tensor repeat_interleave(const Tensor& x, int64_t repeats, int64_t dim);
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);

// ---- attention -----------------------------------------------------------------
// Which implementation attention uses (see tensor/ops/attention.cpp): the device's fused
// kernel, batched GEMMs around a masked softmax, or, for bf16 operands on CUDA, cuDNN's
// fused flash attention or our tensor-core tiles (short sequences, head views read and
// written in place). Auto: the tiles for bf16 operands on CUDA where they fit, else
// GEMMs on CUDA for short keys, else the fused kernel.
enum class AttentionPath { Auto, Fused, Gemm, Cudnn, Tiles };
void set_attention_path(AttentionPath path);
AttentionPath attention_path();
// Sets the attention path for its lifetime and restores the previous one.
class AttentionPathGuard {
 public:
  explicit AttentionPathGuard(AttentionPath path) : previous_(attention_path()) { set_attention_path(path); }
  ~AttentionPathGuard() { set_attention_path(previous_); }
  AttentionPathGuard(const AttentionPathGuard&) = delete;
  AttentionPathGuard& operator=(const AttentionPathGuard&) = delete;

 private:
  AttentionPath previous_;
};
// A key-padding mask ([B, Lk], any integer or bool dtype, nonzero = attend) as the
// contiguous bytes the kernels read: itself when it already is. A model converts its
// mask once and passes the result to every layer.
Tensor attention_key_mask(const Tensor& key_keep);
// True when attention over these q and k takes the GEMM path (bf16 operands do, unless
// they go to cuDNN or the tiles).
bool attention_uses_gemm(const Tensor& q, const Tensor& k);
// True when attention over these q and k takes the tensor-core tiles, which read q, k, v
// (and the backward's output gradient) as the views they are -- a caller need not make
// them contiguous -- and lay out the output and the gradients as [B, L, H, D] memory
// seen as [B, H, L, D] (so the heads merge back into [B, L, H * D] without a copy).
bool attention_uses_tiles(const Tensor& q, const Tensor& k);
// True when attention over these q and k reads its operands as views and lays out its
// output and gradients heads-last, as the tiles do: the tiles, or a device's fused kernel
// that reads views (the CPU's; Backend::attention_reads_views).
bool attention_reads_views(const Tensor& q, const Tensor& k);
// True when float32 q and k would be better cast to bfloat16 under autocast: attention
// over them takes the GEMM path, or cuDNN's kernel (MMS_ATTENTION=cudnn on CUDA).
bool attention_takes_bf16(const Tensor& q, const Tensor& k);
// The same decision before q and k exist (a layer choosing its projections' output dtype).
bool attention_takes_bf16(Device device, int64_t key_len);
// q, k, v all of one floating dtype, or bfloat16: on the GEMM path (autocast's mixed
// form) out, lse and the gradients are float32 (the GEMMs accumulate in float32; scores,
// softmax and log-sum-exp are float32); on cuDNN's path out and the gradients are
// bfloat16 (as cuDNN writes them) and lse float32; the tiles' are float32 like the GEMM
// path's.
struct AttentionResult { Tensor out, lse; };
// out_dtype: bfloat16 asks the GEMM path or the tiles for a bf16 output from bf16
// operands (default: the dtypes above).
AttentionResult attention(const Tensor& q, const Tensor& k, const Tensor& v,
                          const Tensor& key_keep, bool causal, double scale,
                          std::optional<DType> out_dtype = std::nullopt);
struct AttentionGrads { Tensor grad_q, grad_k, grad_v; };
// grads_dtype: bfloat16 asks the GEMM path or the tiles for bf16 gradients of bf16
// operands (what a bf16 q/k/v needs back; default: the dtypes above).
AttentionGrads attention_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k,
                                  const Tensor& v, const Tensor& out, const Tensor& lse,
                                  const Tensor& key_keep, bool causal, double scale,
                                  std::optional<DType> grads_dtype = std::nullopt);
// The same gradients written into given [B, H, L, D] tensors of one dtype (which asks
// for it as grads_dtype does), e.g. views of one packed q/k/v gradient: the tiles write
// them in place, the other paths compute them and copy them in.
void attention_backward_into(const Tensor& grad_out, const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& out, const Tensor& lse, const Tensor& key_keep, bool causal,
                             double scale, Tensor& grad_q, Tensor& grad_k, Tensor& grad_v);

// ---- checks shared by the dispatch files (and by autograd's versions) ----------
// stack: every tensor has tensor 0's shape; returns dim wrapped for the stacked rank.
int64_t check_stack(const std::vector<Tensor>& tensors, int64_t dim);
// split: the (start, length) pieces of a dim of `size` cut every split_size.
std::vector<std::pair<int64_t, int64_t>> split_ranges(int64_t size, int64_t split_size);
void check_same_device(const char* op, const Tensor& a, const Tensor& b);
void check_same_dtype(const char* op, const Tensor& a, const Tensor& b);
void check_floating(const char* op, const Tensor& x);

}  // namespace mms::ops
