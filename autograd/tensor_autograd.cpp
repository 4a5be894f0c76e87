// The autograd-facing members of Tensor (declared in tensor/tensor.h).
#include "autograd/node.h"
#include "tensor/ops.h"

namespace mms {

bool Tensor::requires_grad() const {
  const auto& meta = impl().autograd;
  return meta && meta->requires_grad;
}

Tensor& Tensor::set_requires_grad(bool enabled) {
  auto& meta = impl().autograd;
  if (!meta) meta = std::make_shared<AutogradMeta>();
  MMS_CHECK(enabled || !meta->grad_fn, "set_requires_grad(false): tensor of shape ",
            shape_str(shape()), " is the output of '", meta->grad_fn ? meta->grad_fn->op : "",
            "'; use detach() instead");
  MMS_CHECK(!enabled || is_floating(dtype()), "set_requires_grad: only floating tensors can "
            "require gradients, got ", dtype_name(dtype()), " ", shape_str(shape()));
  meta->requires_grad = enabled;
  return *this;
}

Tensor Tensor::grad() const {
  const auto& meta = impl().autograd;
  return meta ? meta->grad : Tensor();
}

void Tensor::set_grad(const Tensor& grad) {
  auto& meta = impl().autograd;
  if (!meta) meta = std::make_shared<AutogradMeta>();
  if (grad.defined())
    MMS_CHECK(grad.shape() == shape(), "set_grad: gradient ", shape_str(grad.shape()),
              " does not match tensor ", shape_str(shape()));
  meta->grad = grad;
}

bool Tensor::is_leaf() const {
  const auto& meta = impl().autograd;
  return !meta || !meta->grad_fn;
}

void Tensor::backward() const {
  MMS_CHECK(numel() == 1, "backward: called without an upstream gradient on a tensor of shape ",
            shape_str(shape()), "; only one-element (scalar) outputs have an implicit gradient of 1");
  run_backward(*this, ones(shape(), dtype(), device()), false);
}

void Tensor::backward(const Tensor& upstream, bool retain_graph) const {
  run_backward(*this, upstream, retain_graph);
}

Tensor Tensor::detach() const {
  return make_view(*this, shape(), strides(), offset());
}

}  // namespace mms
