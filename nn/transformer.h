// Transformer blocks with Hugging Face CLIP names, so CLIP checkpoints load unchanged:
//
//   Encoder                       layers.N.*
//   EncoderLayer (pre-LN)         layer_norm1, self_attn, layer_norm2, mlp
//   MultiHeadAttention            q_proj, k_proj, v_proj, out_proj   (CLIPAttention)
//   MLP                           fc1, fc2                           (CLIPMLP)
//
// Attention runs through the fused scaled_dot_product_attention (autograd/api.h).
// CLIP uses no dropout inside the encoder (attention_dropout = dropout = 0), so these
// blocks have none; put Dropout around them where a head needs it.
#pragma once

#include "nn/activation.h"
#include "nn/layers.h"

namespace mms::nn {

struct TransformerConfig {
  int64_t hidden_size = 512;
  int64_t num_heads = 8;
  int64_t intermediate_size = 2048;
  int64_t num_layers = 12;
  Activation activation = Activation::QuickGelu;
  double layer_norm_eps = 1e-5;
  double init_std = kDefaultInitStd;
};

class MultiHeadAttention : public Module {
 public:
  MultiHeadAttention(int64_t embed_dim, int64_t num_heads, double init_std = kDefaultInitStd);
  // x [B, L, D]; key_keep [B, L] (nonzero = attend; Bool/UInt8/Int64) optional;
  // causal masks keys after the query. Scale 1/sqrt(head_dim). Returns [B, L, D].
  Tensor forward(const Tensor& x, const Tensor& key_keep = Tensor(), bool causal = false) const;

  int64_t embed_dim, num_heads, head_dim;
  std::shared_ptr<Linear> q_proj, k_proj, v_proj, out_proj;
};

class MLP : public Module {
 public:
  MLP(int64_t hidden_size, int64_t intermediate_size, Activation activation,
      double init_std = kDefaultInitStd);
  Tensor forward(const Tensor& x) const;  // fc2(act(fc1(x)))

  Activation activation;
  std::shared_ptr<Linear> fc1, fc2;
};

// x + attn(ln1(x)), then + mlp(ln2(.)).
class EncoderLayer : public Module {
 public:
  explicit EncoderLayer(const TransformerConfig& config);
  Tensor forward(const Tensor& x, const Tensor& key_keep = Tensor(), bool causal = false) const;

  std::shared_ptr<LayerNorm> layer_norm1;
  std::shared_ptr<MultiHeadAttention> self_attn;
  std::shared_ptr<LayerNorm> layer_norm2;
  std::shared_ptr<MLP> mlp;
};

class Encoder : public Module {
 public:
  explicit Encoder(const TransformerConfig& config);
  // The last hidden state [B, L, D].
  Tensor forward(const Tensor& x, const Tensor& key_keep = Tensor(), bool causal = false) const;
  // Every hidden state, as HF's output_hidden_states: the input, then each layer's
  // output (num_layers + 1 tensors).
  std::vector<Tensor> forward_all(const Tensor& x, const Tensor& key_keep = Tensor(),
                                  bool causal = false) const;

  size_t num_layers() const { return layers->size(); }
  std::shared_ptr<EncoderLayer> layer(size_t i) const { return layers->at<EncoderLayer>(i); }

  TransformerConfig config;
  std::shared_ptr<ModuleList> layers;
};

}  // namespace mms::nn
