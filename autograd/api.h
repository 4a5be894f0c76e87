// The differentiable op API: what nn/, vlm/ and losses/ call. Each function runs the
// raw op (tensor/ops.h) and, when an input requires grad, records a Node whose
// derivative formula sits next to the forward in autograd/<family>.cpp.
#pragma once

#include <optional>
#include <vector>

#include "autograd/autocast.h"
#include "autograd/node.h"
#include "tensor/ops.h"

namespace mms {

// ---- elementwise (autograd/elementwise.cpp) ------------------------------------
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);  // a > 0 where b's gradient is needed
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor sub(const Tensor& a, double s);
Tensor rsub(double s, const Tensor& a);  // s - a
Tensor mul(const Tensor& a, double s);
Tensor div(const Tensor& a, double s);
Tensor rdiv(double s, const Tensor& a);  // s / a
Tensor pow(const Tensor& a, double exponent);
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor log1p(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor square(const Tensor& x);
Tensor clamp(const Tensor& x, std::optional<double> low, std::optional<double> high);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x, bool tanh_approximation = false);
Tensor quick_gelu(const Tensor& x);  // x * sigmoid(1.702 x)
// cond ? a : b (cond carries no gradient).
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);
// Inverted dropout: zeroes with probability p and scales the rest by 1/(1-p). The mask
// comes from the Philox stream at (seed, offset), so it is reproducible on any device.
Tensor dropout(const Tensor& x, double p, bool training, uint64_t seed, uint64_t offset);
// Same, drawing (seed, offset) from the default generator.
Tensor dropout(const Tensor& x, double p, bool training);

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& x);
Tensor operator+(const Tensor& a, double s);
Tensor operator-(const Tensor& a, double s);
Tensor operator*(const Tensor& a, double s);
Tensor operator/(const Tensor& a, double s);
Tensor operator+(double s, const Tensor& a);
Tensor operator-(double s, const Tensor& a);
Tensor operator*(double s, const Tensor& a);
Tensor operator/(double s, const Tensor& a);

// ---- reductions (autograd/reduce.cpp) -------------------------------------------
Tensor sum(const Tensor& x, std::vector<int64_t> dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, std::vector<int64_t> dims = {}, bool keepdim = false);
// Max over dims; the gradient goes to every maximal element, split evenly (as torch.amax).
Tensor amax(const Tensor& x, std::vector<int64_t> dims = {}, bool keepdim = false);
Tensor logsumexp(const Tensor& x, std::vector<int64_t> dims, bool keepdim = false);

// ---- views and shape (autograd/views.cpp) ---------------------------------------
Tensor reshape(const Tensor& x, Shape shape);
Tensor view(const Tensor& x, Shape shape);
Tensor flatten(const Tensor& x, int64_t start_dim = 0, int64_t end_dim = -1);
Tensor permute(const Tensor& x, const std::vector<int64_t>& order);
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1);
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
Tensor select(const Tensor& x, int64_t dim, int64_t index);
Tensor expand(const Tensor& x, const Shape& shape);
Tensor squeeze(const Tensor& x, int64_t dim);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor contiguous(const Tensor& x);
// Differentiable dtype conversion (gradient converted back to the input dtype).
Tensor to_dtype(const Tensor& x, DType dtype);
// Differentiable device move (gradient moved back).
Tensor to_device(const Tensor& x, Device device);

// ---- linear algebra (autograd/linalg.cpp) ---------------------------------------
// Under an AutocastGuard(bfloat16) (autograd/autocast.h) both run bf16 x bf16 -> float32.
Tensor matmul(const Tensor& a, const Tensor& b);
// What linear returns when its GEMM runs in bf16 (under autocast): float32, which every
// consumer takes (the default), or bfloat16 -- autocast's bf16 activations, for a
// consumer that takes bf16 (the MLP's activation, whose output feeds the next linear as
// it is). The bf16 output saves the float32 write, the consumer's pass moves half the
// bytes, the next linear needs no cast, and the backward's gradients stay bf16 in
// between. No effect when the GEMM runs in float32 or float64 (it runs in bf16 under
// autocast, or when x and weight already are bf16). A bf16 output used by several ops
// gets its gradients summed in float32 and rounded once.
enum class AutocastOutput { Float32, BFloat16 };
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
              AutocastOutput output = AutocastOutput::Float32);
// gelu(linear(x, weight, bias), tanh approximation) as one op: one GEMM with a GELU
// epilogue on CUDA (cuBLASLt); the same values and gradients as the two ops composed.
Tensor linear_gelu_tanh(const Tensor& x, const Tensor& weight, const Tensor& bias);

// ---- normalisation (autograd/normalization.cpp) ---------------------------------
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);
// Over the last dim; eps inside the sqrt; biased variance; weight/bias optional.
// AutocastOutput::BFloat16: under autocast (with bf16 activations on), a float32 x gives
// a bf16 output -- for a consumer that is a linear, which would cast it anyway -- with
// float32 statistics, and takes its gradient as bf16.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5,
                  AutocastOutput output = AutocastOutput::Float32);
// x / max(||x||_2, eps) along dim (as torch.nn.functional.normalize).
Tensor normalize(const Tensor& x, int64_t dim = -1, double eps = 1e-12);

// ---- indexing and joining (autograd/indexing.cpp) -------------------------------
// weight [V, D], ids Int64 of any shape -> [*ids.shape, D]; the backward scatters rows.
Tensor embedding(const Tensor& weight, const Tensor& ids);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim);
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim);
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim);
Tensor repeat_interleave(const Tensor& x, int64_t repeats, int64_t dim);

// ---- attention (autograd/attention.cpp) -----------------------------------------
// q [B, H, Lq, D], k, v [B, H, Lk, D]; key_keep [B, Lk] (nonzero = attend) optional;
// scale defaults to 1/sqrt(D). Fused forward/backward (saves the log-sum-exp only).
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& key_keep = Tensor(), bool causal = false,
                                    std::optional<double> scale = std::nullopt);
// Self-attention over a packed projection qkv [B, L, 3 * heads * Dh] (q, k, v side by
// side, as one linear with the three weights stacked makes them) -> the heads' outputs
// merged, [B, L, heads * Dh]. The same values as splitting qkv into heads and calling
// scaled_dot_product_attention; its backward writes the one packed gradient.
Tensor packed_self_attention(const Tensor& qkv, int64_t heads, const Tensor& key_keep = Tensor(),
                             bool causal = false, std::optional<double> scale = std::nullopt);

}  // namespace mms
