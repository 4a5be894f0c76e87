#include "nn/activation.h"

#include "autograd/api.h"

namespace mms::nn {

Activation parse_activation(const std::string& name) {
  if (name == "quick_gelu") return Activation::QuickGelu;
  if (name == "gelu") return Activation::Gelu;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast")
    return Activation::GeluTanh;
  if (name == "relu") return Activation::Relu;
  fail("activation: unknown hidden_act '", name,
       "' (known: quick_gelu, gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu)");
}

std::string activation_name(Activation activation) {
  switch (activation) {
    case Activation::QuickGelu: return "quick_gelu";
    case Activation::Gelu: return "gelu";
    case Activation::GeluTanh: return "gelu_new";
    case Activation::Relu: return "relu";
  }
  return "?";
}

Tensor apply_activation(Activation activation, const Tensor& x) {
  switch (activation) {
    case Activation::QuickGelu: return quick_gelu(x);
    case Activation::Gelu: return gelu(x, false);
    case Activation::GeluTanh: return gelu(x, true);
    case Activation::Relu: return relu(x);
  }
  fail("activation: invalid enum value");
}

}  // namespace mms::nn
