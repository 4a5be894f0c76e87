// The basic layers: Linear, LayerNorm, Embedding, Dropout. Parameter names follow
// PyTorch / Hugging Face ("weight", "bias") so state dicts load unchanged.
//
// Every layer is created in float32 on the host, initialised from the default
// generator (seed it with manual_seed for reproducible weights); use Module::to(dtype)
// / to(device) afterwards.
#pragma once

#include "autograd/api.h"
#include "nn/init.h"
#include "nn/module.h"

namespace mms::nn {

// y = x W^T + b, weight [out, in], bias [out] (zeros).
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true,
         double init_std = kDefaultInitStd);
  // [..., in] -> [..., out]; `output` chooses what autocast returns (autograd/api.h).
  Tensor forward(const Tensor& x, AutocastOutput output = AutocastOutput::Float32) const;

  int64_t in_features, out_features;
  Tensor weight;
  Tensor bias;  // undefined when bias == false
};

// Normalises over the last dim: (x - mean) / sqrt(var + eps) * weight + bias.
class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t normalized_size, double eps = 1e-5);
  // `output` chooses what autocast returns (autograd/api.h: bf16 for a linear to read).
  Tensor forward(const Tensor& x, AutocastOutput output = AutocastOutput::Float32) const;

  int64_t normalized_size;
  double eps;
  Tensor weight;  // [n], ones
  Tensor bias;    // [n], zeros
};

// Looks up rows of weight [num_embeddings, embedding_dim] by Int64 ids of any shape.
class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t embedding_dim, double init_std = kDefaultInitStd);
  Tensor forward(const Tensor& ids) const;  // ids [...] -> [..., embedding_dim]

  int64_t num_embeddings, embedding_dim;
  Tensor weight;
};

// Inverted dropout, active only in training mode; masks come from the default generator.
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.1);
  Tensor forward(const Tensor& x) const;

  double p;
};

}  // namespace mms::nn
