#include "nn/layers.h"

#include "autograd/api.h"

namespace mms::nn {

Linear::Linear(int64_t in, int64_t out, bool has_bias, double init_std)
    : Module("Linear"), in_features(in), out_features(out) {
  MMS_CHECK(in > 0 && out > 0, "Linear: sizes must be positive, got in=", in, " out=", out);
  weight = register_parameter("weight", init_normal({out, in}, init_std));
  if (has_bias) bias = register_parameter("bias", zeros({out}));
}

Tensor Linear::forward(const Tensor& x, AutocastOutput output) const {
  MMS_CHECK(x.dim() >= 1 && x.size(-1) == in_features, "Linear(", in_features, " -> ",
            out_features, "): input ", shape_str(x.shape()), " does not end in ", in_features);
  return linear(x, weight, bias, output);
}

LayerNorm::LayerNorm(int64_t n, double eps_) : Module("LayerNorm"), normalized_size(n), eps(eps_) {
  MMS_CHECK(n > 0, "LayerNorm: size must be positive, got ", n);
  weight = register_parameter("weight", ones({n}));
  bias = register_parameter("bias", zeros({n}));
}

Tensor LayerNorm::forward(const Tensor& x, AutocastOutput output) const {
  MMS_CHECK(x.dim() >= 1 && x.size(-1) == normalized_size, "LayerNorm(", normalized_size,
            "): input ", shape_str(x.shape()), " does not end in ", normalized_size);
  return layer_norm(x, weight, bias, eps, output);
}

Embedding::Embedding(int64_t n, int64_t d, double init_std)
    : Module("Embedding"), num_embeddings(n), embedding_dim(d) {
  MMS_CHECK(n > 0 && d > 0, "Embedding: sizes must be positive, got ", n, " x ", d);
  weight = register_parameter("weight", init_normal({n, d}, init_std));
}

Tensor Embedding::forward(const Tensor& ids) const {
  MMS_CHECK(ids.dtype() == DType::Int64, "Embedding: ids must be int64, got ", dtype_name(ids.dtype()));
  return embedding(weight, ids);
}

Dropout::Dropout(double p_) : Module("Dropout"), p(p_) {
  MMS_CHECK(p >= 0.0 && p <= 1.0, "Dropout: probability must be in [0, 1], got ", p);
}

Tensor Dropout::forward(const Tensor& x) const { return dropout(x, p, is_training()); }

}  // namespace mms::nn
