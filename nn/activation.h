// Activation functions chosen by name, as Hugging Face configs spell them (hidden_act).
#pragma once

#include <string>

#include "tensor/tensor.h"

namespace mms::nn {

enum class Activation {
  QuickGelu,  // "quick_gelu": x * sigmoid(1.702 x), OpenAI CLIP
  Gelu,       // "gelu": exact erf form
  GeluTanh,   // "gelu_new", "gelu_pytorch_tanh", "gelu_fast": tanh approximation
  Relu,       // "relu"
};

// Throws mms::Error naming the unknown name and the accepted ones.
Activation parse_activation(const std::string& name);
std::string activation_name(Activation activation);
Tensor apply_activation(Activation activation, const Tensor& x);

}  // namespace mms::nn
