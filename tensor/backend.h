// The kernel interface every device implements: the contract between the dispatch
// layer (tensor/ops/*.cpp: checks shapes, broadcasts, allocates) and the kernels
// (tensor/cpu/ and, through tensor/cuda_glue/, cuda/).
//
// Conventions, so a kernel never has to re-check what dispatch already did:
//  - outputs are allocated by the caller, contiguous, of the right shape and dtype;
//  - "any strides" inputs have exactly the output's shape (broadcast inputs arrive
//    expanded, with stride 0 along broadcast dims);
//  - "contiguous" inputs are contiguous;
//  - a Tensor argument that is optional is passed as an undefined Tensor when absent;
//  - floating kernels support float32 and float64 (CUDA: float32, plus bf16 where
//    noted); anything else is a clear mms::Error naming the op and the dtype.
#pragma once

#include <cstdint>
#include <vector>

#include "tensor/tensor.h"

namespace mms {

enum class UnaryOp : uint8_t {
  Neg, Exp, Log, Log1p, Sqrt, Rsqrt, Abs, Sign, Reciprocal, Square,
  Tanh, Sigmoid, Relu,
  GeluErf,    // x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
  GeluTanh,   // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  QuickGelu,  // x * sigmoid(1.702 x), as in OpenAI's CLIP
  AddScalar,  // x + alpha
  MulScalar,  // x * alpha
  PowScalar,  // x ^ alpha
  RSubScalar, // alpha - x
  RDivScalar, // alpha / x
  Clamp,      // min(max(x, alpha), beta); alpha = -inf / beta = +inf to leave a side open
};

enum class BinaryOp : uint8_t {
  Add, Sub, Mul, Div, Pow, Maximum, Minimum,
  // comparisons produce Bool
  Eq, Ne, Lt, Le, Gt, Ge,
};

enum class ReduceOp : uint8_t { Sum, Max, Min, ArgMax, LogSumExp };

enum class RandomKind : uint8_t { Uniform, Normal };

// What a fused linear forward applies after the GEMM (Backend::linear_epilogue).
enum class LinearEpilogue : uint8_t {
  Bias,          // + bias
  GeluTanhBias,  // gelu_tanh(. + bias)
};

const char* unary_op_name(UnaryOp op);
const char* binary_op_name(BinaryOp op);
const char* reduce_op_name(ReduceOp op);

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // dst[...] = src[...] elementwise, same shape, any strides on both sides, any dtypes
  // (values converted; float -> int truncates toward zero, nonzero -> true).
  virtual void copy(const Tensor& src, Tensor& dst) = 0;
  // out = inputs laid end to end: every input contiguous, of out's dtype and device, and
  // out contiguous with their total numel (ops::cat along dim 0, or along a dim with only
  // size-1 dims before it). Returns false, having written nothing, where the backend has
  // no such path (the default): ops::cat then copies each input into its slice.
  virtual bool concat_contiguous(const std::vector<Tensor>& inputs, Tensor& out) {
    (void)inputs, (void)out;
    return false;
  }
  // dst (contiguous) = value.
  virtual void fill(Tensor& dst, double value) = 0;
  // dst (contiguous, 1-D) = start + i * step.
  virtual void arange(Tensor& dst, double start, double step) = 0;
  // dst (contiguous, floating) from the Philox stream at (seed, offset + i).
  // Uniform: a + (b - a) * u, u in [0, 1). Normal: a + b * z (Box-Muller on pairs).
  virtual void random(RandomKind kind, uint64_t seed, uint64_t offset, double a, double b,
                      Tensor& dst) = 0;
  // Inverted dropout in one pass: out = x * (u >= p ? 1/(1-p) : 0), u the uniform at
  // stream position offset + i (the same u as random(Uniform, seed, offset, 0, 1) would
  // give element i), p and 1/(1-p) rounded to x's dtype first. x and out contiguous,
  // same shape and floating dtype; p in [0, 1] (p = 1 drops everything).
  virtual void dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset, Tensor& out) = 0;

  // out = op(x); x any strides.
  virtual void unary(UnaryOp op, const Tensor& x, Tensor& out, double alpha, double beta) = 0;
  // grad_in = grad_out * d op(x) / dx; grad_out and x any strides. For Clamp the
  // gradient passes where alpha <= x <= beta; for Abs/Relu/Sign the derivative at 0 is 0.
  virtual void unary_backward(UnaryOp op, const Tensor& grad_out, const Tensor& x,
                              Tensor& grad_in, double alpha, double beta) = 0;
  // out = a op b; a, b any strides (already expanded to out's shape).
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) = 0;
  // out = cond ? a : b; cond Bool/UInt8, all any strides expanded to out's shape.
  virtual void where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out) = 0;

  // x contiguous [M, R] -> out [M] (ArgMax: Int64, first maximum wins).
  virtual void reduce_last(ReduceOp op, const Tensor& x, Tensor& out) = 0;
  // The column sums of contiguous x [M, N] into out [N] (x's dtype): the bias gradient's
  // shape. False when the device has no such kernel for x's dtype; ops::sum then runs a
  // ones-row GEMV.
  virtual bool sum_rows(const Tensor& x, Tensor& out) {
    (void)x, (void)out;
    return false;
  }

  // Row-wise over the last dim of contiguous [M, N].
  virtual void softmax_last(const Tensor& x, Tensor& out, bool log) = 0;
  // grad_in = y * (g - sum(g*y))  (softmax)   or   g - exp(y) * sum(g)  (log_softmax)
  virtual void softmax_last_backward(const Tensor& grad_out, const Tensor& y, Tensor& grad_in,
                                     bool log) = 0;

  // Attention's masked softmax (ops::attention's GEMM path), over the rows of contiguous
  // scores [B, H, Lq, Lk]: key j is visible to query i when key_keep[b, j] is nonzero
  // (key_keep optional, contiguous Bool/UInt8 [B, Lk]) and, when causal, j <= i.
  //   probs[b, h, i, j] = exp(S - lse) at visible keys, 0 at hidden ones;
  //   lse[b, h, i] = log of the sum of exp(S) over the visible keys (-inf, with a zero
  //   row of probs, when no key is visible).
  // One pass instead of masking (where), log-sum-exp, softmax and zeroing the hidden
  // entries again. scores float32/float64; probs contiguous, scores' dtype or bfloat16
  // (written rounded: the operand of PV's mixed GEMM); lse optional, scores' dtype.
  virtual void attention_softmax(const Tensor& scores, const Tensor& key_keep, bool causal, Tensor& probs,
                                 Tensor& lse) = 0;

  // Row-wise over contiguous x [M, N]; weight/bias [N] optional. Saves mean and
  // rstd = 1/sqrt(var + eps) (biased variance) as [M] for the backward. y is in x's
  // dtype, or bf16 for a float32 x (rounded once); the backward's grad_y likewise.
  virtual void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                          Tensor& y, Tensor& mean, Tensor& rstd) = 0;
  // grad_weight/grad_bias are written (not accumulated) when defined. grad_x_addend,
  // when defined ([M, N], x's dtype, contiguous, not aliasing grad_x), is added to grad_x
  // in the same pass: grad_x = grad_x_addend + dL/dx. That folds in the gradient the
  // input already has from its other consumer (the residual stream's, in a transformer)
  // instead of a separate add; the CPU adds it after the row exactly as that add would.
  virtual void layer_norm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight,
                                   const Tensor& mean, const Tensor& rstd, const Tensor& grad_x_addend,
                                   Tensor& grad_x, Tensor& grad_weight, Tensor& grad_bias) = 0;

  // Batched GEMM on contiguous 3-D operands:
  //   out[b] = alpha * op(a[b]) @ op(b[b]) + beta * out[b]
  // a is [B, M, K] ([B, K, M] when trans_a), b is [B, K, N] ([B, N, K] when trans_b),
  // out is [B, M, N]. A batch size of 1 in a or b broadcasts over out's batch.
  // dtypes: a, b and out all the same floating type, or the mixed form a, b bfloat16
  // with out float32 (products and sums in float32: autocast's GEMM) or bfloat16 (the
  // same, rounded once on the way out: autocast's bf16 activations).
  virtual void bmm(const Tensor& a, const Tensor& b, Tensor& out, bool trans_a, bool trans_b,
                   double alpha, double beta) = 0;

  // The linear layer's forward as one GEMM whose epilogue applies the bias (and the
  // activation), where the device has one (CUDA: cuBLASLt, cuda/gemm_lt.h):
  //   Bias:          out = x @ weight^T + bias
  //   GeluTanhBias:  out = gelu_tanh(x @ weight^T + bias); pre_activation, when defined,
  //                  receives x @ weight^T + bias (the backward's input)
  // x [M, K] and weight [N, K] contiguous, both float32 or both bfloat16; bias [N],
  // out and pre_activation [M, N], contiguous, all float32, or all bfloat16 with bf16
  // x and weight (autocast's bf16 activations); M, N, K > 0. Returns false,
  // having written nothing, when this backend has no fused path for these operands (the
  // default): the caller then runs bmm and the separate passes.
  virtual bool linear_epilogue(const Tensor& x, const Tensor& weight, const Tensor& bias,
                               LinearEpilogue epilogue, Tensor& out, Tensor& pre_activation) {
    (void)x, (void)weight, (void)bias, (void)epilogue, (void)out, (void)pre_activation;
    return false;
  }

  // The linear layer's weight and bias gradients as one GEMM whose epilogue sums the
  // bias gradient (CUDA: cuBLASLt's BGRADB, cuda/gemm_lt.h), where the device has one:
  //   grad_weight [N, K] = grad_out^T @ x,   grad_bias [N] = sum over rows of grad_out
  // grad_out [M, N] and x [M, K] contiguous, both float32 or both bfloat16; grad_weight
  // and grad_bias contiguous float32, overwritten; M, N, K > 0. Returns false, having
  // written nothing, where there is no fused path (the default): the caller then runs
  // bmm and a reduction. may_fuse_linear_weight_grad says, before any output is
  // allocated, whether a call for these operand dtypes can take the fused path at all.
  virtual bool may_fuse_linear_weight_grad(DType operands) const {
    (void)operands;
    return false;
  }
  virtual bool linear_weight_grad(const Tensor& grad_out, const Tensor& x, Tensor& grad_weight, Tensor& grad_bias) {
    (void)grad_out, (void)x, (void)grad_weight, (void)grad_bias;
    return false;
  }

  // out[i, :] = table[index[i], :]; table contiguous [N, D], index Int64 [I].
  virtual void index_select_rows(const Tensor& table, const Tensor& index, Tensor& out) = 0;
  // table_grad[index[i], :] += grad[i, :]; grad contiguous [I, D].
  virtual void index_add_rows(const Tensor& grad, const Tensor& index, Tensor& table_grad) = 0;
  // out[m, k] = x[m, index[m, k]]; x contiguous [M, N], index Int64 [M, K].
  virtual void gather_last(const Tensor& x, const Tensor& index, Tensor& out) = 0;
  // out[m, index[m, k]] += grad[m, k].
  virtual void scatter_add_last(const Tensor& grad, const Tensor& index, Tensor& out) = 0;

  // ---- fused training kernels -------------------------------------------------
  // ListMLE on scores [B, K] (contiguous). order [B, K] Int64 lists, per list, the item
  // indices sorted by gold rating descending (ties already broken); only the first
  // lengths[b] (Int64 [B]) entries are valid. Writes the loss of each list [B] and
  // d loss_b / d scores [B, K] (zero at invalid items; zero loss for lists < 2 items).
  virtual void listmle(const Tensor& scores, const Tensor& order, const Tensor& lengths,
                       Tensor& loss, Tensor& grad_scores) = 0;

  // One AdamW step over many tensors at once (decoupled weight decay, bias correction):
  //   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
  //   p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) + lr * wd * p
  // All float32 (or float64 on CPU), contiguous, updated in place.
  struct AdamWTensor { Tensor param, grad, exp_avg, exp_avg_sq; double weight_decay; };
  virtual void adamw(const std::vector<AdamWTensor>& tensors, double lr, double beta1,
                     double beta2, double eps, int64_t step) = 0;
  // The same update with the learning rate (lr * lr_scale) and the step count t read from
  // scalars on the tensors' device (lr float64, step int64, t >= 1), so that nothing the
  // host passes changes from step to step: what a CUDA graph replay needs.
  virtual void adamw_device_scalars(const std::vector<AdamWTensor>& tensors, const Tensor& lr,
                                    double lr_scale, double beta1, double beta2, double eps,
                                    const Tensor& step) = 0;
  // out (a float64 scalar on this backend's device) = sum over all tensors of sum(x^2),
  // accumulated in double (the global gradient norm^2). Nothing is read to the host.
  virtual void sum_of_squares_into(const std::vector<Tensor>& tensors, Tensor& out) = 0;
  // The same value read to the host (a wait for the device). 0 for no tensors.
  double sum_of_squares(const std::vector<Tensor>& tensors);

  // Scaled dot-product attention on contiguous q [B, H, Lq, D], k, v [B, H, Lk, D]:
  //   P = softmax(scale * q k^T + mask), out = P v.
  // Where attention_reads_views() is true, every tensor of both calls (q, k, v, out,
  // grad_out, the gradients; not lse) may instead be any view whose last dim is
  // contiguous, read and written through its strides (the CPU's kernel does this).
  // key_keep (optional, [B, Lk], Bool/UInt8/Int64: nonzero = attend) masks padded keys;
  // causal masks key j > query i. A row with no key left gives out = 0 and lse = -inf.
  // lse [B, H, Lq] (float32 or the input dtype) is saved for the backward.
  virtual void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_keep,
                         bool causal, double scale, Tensor& out, Tensor& lse) = 0;
  virtual bool attention_reads_views() const { return false; }
  virtual void attention_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k,
                                  const Tensor& v, const Tensor& out, const Tensor& lse,
                                  const Tensor& key_keep, bool causal, double scale,
                                  Tensor& grad_q, Tensor& grad_k, Tensor& grad_v) = 0;

  // Attention on bf16 tensor-core tiles, one (batch, head) whole in on-chip memory, for
  // short sequences (CUDA: cuda/attention_tiles.h). q, k, v are bf16 and, like grad_out,
  // out and the gradients, may be any [B, H, L, D] views whose last dim is contiguous
  // (the projections' head views are read and written where they lie). out, grad_out
  // and the gradients are all float32 or all bf16; lse [B, H, Lq] float32 contiguous;
  // masks as attention(). attention_tiles_supported says whether this device takes
  // these sizes (the default: no device does); the kernels are an error where it does not.
  virtual bool attention_tiles_supported(int64_t query_len, int64_t key_len, int64_t head_dim) {
    (void)query_len, (void)key_len, (void)head_dim;
    return false;
  }
  virtual void attention_tiles(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_keep,
                               bool causal, double scale, Tensor& out, Tensor& lse);
  virtual void attention_tiles_backward(const Tensor& grad_out, const Tensor& q, const Tensor& k,
                                        const Tensor& v, const Tensor& out, const Tensor& lse,
                                        const Tensor& key_keep, bool causal, double scale, Tensor& grad_q,
                                        Tensor& grad_k, Tensor& grad_v);
};

Backend& cpu_backend();
// Throws a clear mms::Error when the library was built without CUDA.
Backend& cuda_backend();
Backend& backend_for(Device device);
// True when the library was built with CUDA and a device is present at run time.
bool cuda_available();
int cuda_device_count();

// Device memory and transfers, implemented by the CUDA glue (tensor/cuda_glue/) and by
// stubs that throw a clear error in a CPU-only build.
void* device_allocate(size_t nbytes, Device device);
void device_deallocate(void* pointer, Device device);
// Copies contiguous bytes between any two devices (host<->device, device<->device).
void device_memcpy(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes);
// Waits for all queued work on the device (no-op on the CPU).
void device_synchronize(Device device);
// How many times the host has waited for a device so far (stream syncs and device ->
// host reads; 0 in a CPU-only build). A training step that leaves it unchanged never
// stalls the host, so kernel launches queue ahead of the GPU (bench/step reports it).
int64_t device_sync_count();

}  // namespace mms
