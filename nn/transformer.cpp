#include "nn/transformer.h"

#include "autograd/api.h"
#include "autograd/autocast.h"

namespace mms::nn {

MultiHeadAttention::MultiHeadAttention(int64_t dim, int64_t heads, double init_std)
    : Module("MultiHeadAttention"), embed_dim(dim), num_heads(heads) {
  MMS_CHECK(heads > 0 && dim > 0 && dim % heads == 0, "MultiHeadAttention: embed_dim ", dim,
            " must be a positive multiple of num_heads ", heads);
  head_dim = dim / heads;
  // Registration order matches HF's CLIPAttention (k, v, q, out) so ordered state
  // dicts list the same sequence as a torch state_dict().
  k_proj = register_module("k_proj", std::make_shared<Linear>(dim, dim, true, init_std));
  v_proj = register_module("v_proj", std::make_shared<Linear>(dim, dim, true, init_std));
  q_proj = register_module("q_proj", std::make_shared<Linear>(dim, dim, true, init_std));
  out_proj = register_module("out_proj", std::make_shared<Linear>(dim, dim, true, init_std));
}

Tensor MultiHeadAttention::forward(const Tensor& x, const Tensor& key_keep, bool causal) const {
  MMS_CHECK(x.dim() == 3 && x.size(2) == embed_dim, "MultiHeadAttention: x must be [batch, length, ",
            embed_dim, "], got ", shape_str(x.shape()));
  // Under autocast, where attention runs on bf16 operands anyway (its GEMM path, cuDNN's
  // or the tiles), the projections return bf16: no float32 write, and the heads are
  // moved (or read in place) as bf16. Where it runs our float32 kernel they stay float32.
  const AutocastOutput qkv_output =
      ops::attention_takes_bf16(x.device(), x.size(1)) ? AutocastOutput::BFloat16 : AutocastOutput::Float32;
  // Training: q, k and v packed side by side, [B, L, 3D], by one GEMM, with the three
  // weights stacked into [3D, D] (and the biases into [3D]) -- a copy of 3D^2 floats per
  // call, against one GEMM instead of three forward and backward and no sum of three
  // input gradients; the stacking's backward hands each parameter its rows.
  // Inference (no graph to record): three GEMMs, whose outputs' head views go to
  // attention as they are -- no stacking of the weights and no packing of the outputs
  // (which cost ~1% of the ViT-B/32 image tower on the CPU, batch 8). The parameters stay
  // HF's either way.
  if (grad_enabled()) {
    const Tensor weight = cat({q_proj->weight, k_proj->weight, v_proj->weight}, 0);
    const Tensor bias = cat({q_proj->bias, k_proj->bias, v_proj->bias}, 0);
    const Tensor qkv = linear(x, weight, bias, qkv_output);
    return out_proj->forward(packed_self_attention(qkv, num_heads, key_keep, causal));
  }
  const int64_t batch = x.size(0), length = x.size(1);
  auto heads = [&](const std::shared_ptr<Linear>& proj) {  // [B, L, D] -> [B, H, L, Dh] view
    return transpose(reshape(proj->forward(x, qkv_output), {batch, length, num_heads, head_dim}), 1, 2);
  };
  const Tensor attended = scaled_dot_product_attention(heads(q_proj), heads(k_proj), heads(v_proj), key_keep, causal);
  // heads-last where the kernel writes so (the CPU's, the tiles): then no copy here
  return out_proj->forward(reshape(contiguous(transpose(attended, 1, 2)), {batch, length, embed_dim}));
}

MLP::MLP(int64_t hidden, int64_t intermediate, Activation act, double init_std)
    : Module("MLP"), activation(act) {
  fc1 = register_module("fc1", std::make_shared<Linear>(hidden, intermediate, true, init_std));
  fc2 = register_module("fc2", std::make_shared<Linear>(intermediate, hidden, true, init_std));
}

Tensor MLP::forward(const Tensor& x) const {
  // cuBLASLt's GELU epilogue is the tanh approximation: only gelu_new models can fuse
  // their activation into fc1's GEMM (quick_gelu and erf-GELU stay separate kernels).
  if (activation == Activation::GeluTanh)
    return fc2->forward(linear_gelu_tanh(x, fc1->weight, fc1->bias));
  // Under autocast the up-projection returns bf16 and the activation runs on bf16, so the
  // down-projection reads its input as it is (no cast of the widest activation).
  return fc2->forward(apply_activation(activation, fc1->forward(x, AutocastOutput::BFloat16)));
}

EncoderLayer::EncoderLayer(const TransformerConfig& c) : Module("EncoderLayer") {
  self_attn = register_module("self_attn",
                              std::make_shared<MultiHeadAttention>(c.hidden_size, c.num_heads, c.init_std));
  layer_norm1 = register_module("layer_norm1", std::make_shared<LayerNorm>(c.hidden_size, c.layer_norm_eps));
  mlp = register_module("mlp", std::make_shared<MLP>(c.hidden_size, c.intermediate_size,
                                                      c.activation, c.init_std));
  layer_norm2 = register_module("layer_norm2", std::make_shared<LayerNorm>(c.hidden_size, c.layer_norm_eps));
}

Tensor EncoderLayer::forward(const Tensor& x, const Tensor& key_keep, bool causal) const {
  // Each norm feeds one linear (the packed q/k/v projection, fc1): under autocast they
  // return bf16, which that linear reads as it is (no cast pass, half the bytes).
  Tensor h = add(x, self_attn->forward(layer_norm1->forward(x, AutocastOutput::BFloat16), key_keep, causal));
  return add(h, mlp->forward(layer_norm2->forward(h, AutocastOutput::BFloat16)));
}

Encoder::Encoder(const TransformerConfig& c) : Module("Encoder"), config(c) {
  MMS_CHECK(c.num_layers >= 0, "Encoder: num_layers must be >= 0, got ", c.num_layers);
  layers = register_module("layers", std::make_shared<ModuleList>());
  for (int64_t i = 0; i < c.num_layers; ++i) layers->push_back(std::make_shared<EncoderLayer>(c));
}

Tensor Encoder::forward(const Tensor& x, const Tensor& key_keep, bool causal) const {
  // converted once per tower, not in every layer's attention forward and backward
  const Tensor keep = ops::attention_key_mask(key_keep);
  Tensor h = x;
  for (size_t i = 0; i < layers->size(); ++i) h = layer(i)->forward(h, keep, causal);
  return h;
}

std::vector<Tensor> Encoder::forward_all(const Tensor& x, const Tensor& key_keep, bool causal) const {
  const Tensor keep = ops::attention_key_mask(key_keep);
  std::vector<Tensor> states{x};
  for (size_t i = 0; i < layers->size(); ++i) states.push_back(layer(i)->forward(states.back(), keep, causal));
  return states;
}

}  // namespace mms::nn
