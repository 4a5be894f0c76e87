// Dispatch for softmax / log_softmax and layer_norm: both work row-wise over the
// last dim, so other dims are moved there first.
#include "tensor/ops.h"

namespace mms::ops {

namespace {
// Moves `dim` last and returns a contiguous [M, N] view plus how to undo it.
struct RowView {
  Tensor rows;
  Shape moved_shape;  // shape after moving dim last
  int64_t dim;
  bool moved;
};

RowView rows_over(const Tensor& x, int64_t dim, const char* op) {
  RowView view;
  view.dim = x.dim() == 0 ? 0 : wrap_dim(dim, x.dim(), op);
  view.moved = x.dim() > 0 && view.dim != x.dim() - 1;
  Tensor moved = view.moved ? transpose(x, view.dim, -1) : x;
  view.moved_shape = moved.shape();
  const int64_t n = x.dim() == 0 ? 1 : moved.size(-1);
  view.rows = reshape(moved.contiguous(), {n == 0 ? 0 : moved.numel() / n, n});
  return view;
}

Tensor restore(const RowView& view, const Tensor& rows, const Shape& original) {
  Tensor shaped = reshape(rows, view.moved_shape);
  if (view.moved) shaped = transpose(shaped, view.dim, -1);
  return original.empty() ? reshape(shaped, {}) : shaped;
}

Tensor softmax_impl(const Tensor& x, int64_t dim, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  check_floating(name, x);
  RowView view = rows_over(x, dim, name);
  Tensor out = empty(view.rows.shape(), x.dtype(), x.device());
  if (out.numel() > 0) backend_for(x.device()).softmax_last(view.rows, out, log);
  return restore(view, out, x.shape());
}
}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, true); }

Tensor softmax_backward(const Tensor& grad_out, const Tensor& y, int64_t dim, bool log) {
  const char* name = log ? "log_softmax backward" : "softmax backward";
  check_same_dtype(name, grad_out, y);
  check_same_device(name, grad_out, y);
  MMS_CHECK(grad_out.shape() == y.shape(), name, ": gradient ", shape_str(grad_out.shape()),
            " and output ", shape_str(y.shape()), " differ");
  RowView g = rows_over(grad_out, dim, name);
  RowView out = rows_over(y, dim, name);
  Tensor grad_in = empty(g.rows.shape(), y.dtype(), y.device());
  if (grad_in.numel() > 0)
    backend_for(y.device()).softmax_last_backward(g.rows, out.rows, grad_in, log);
  return restore(g, grad_in, y.shape());
}

LayerNormResult layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                           std::optional<DType> out_dtype) {
  check_floating("layer_norm", x);
  const DType y_dtype = out_dtype.value_or(x.dtype());
  MMS_CHECK(y_dtype == x.dtype() || (y_dtype == DType::BFloat16 && x.dtype() == DType::Float32),
            "layer_norm: a ", dtype_name(x.dtype()), " input gives a ", dtype_name(x.dtype()),
            " output (or bf16 from float32), not ", dtype_name(y_dtype));
  MMS_CHECK(x.dim() >= 1, "layer_norm: input must have at least 1 dim, got a scalar");
  const int64_t n = x.size(-1);
  for (const Tensor* p : {&weight, &bias}) {
    if (!p->defined()) continue;
    check_same_dtype("layer_norm", x, *p);
    check_same_device("layer_norm", x, *p);
    MMS_CHECK(p->dim() == 1 && p->size(0) == n, "layer_norm: weight/bias of shape ",
              shape_str(p->shape()), " do not match the normalised size ", n, " of input ",
              shape_str(x.shape()));
  }
  MMS_CHECK(eps >= 0, "layer_norm: eps must be >= 0, got ", eps);
  const int64_t m = n == 0 ? 0 : x.numel() / n;
  Tensor rows = reshape(x.contiguous(), {m, n});
  LayerNormResult result;
  Tensor y = empty({m, n}, y_dtype, x.device());
  result.mean = empty({m}, x.dtype(), x.device());
  result.rstd = empty({m}, x.dtype(), x.device());
  if (y.numel() > 0)
    backend_for(x.device()).layer_norm(rows, weight.defined() ? weight.contiguous() : weight,
                                       bias.defined() ? bias.contiguous() : bias, eps, y,
                                       result.mean, result.rstd);
  result.y = reshape(y, x.shape());
  return result;
}

LayerNormGrads layer_norm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight,
                                   const Tensor& mean, const Tensor& rstd, bool need_weight_grads,
                                   const Tensor& grad_x_addend) {
  if (!(grad_y.dtype() == DType::BFloat16 && x.dtype() == DType::Float32))
    check_same_dtype("layer_norm backward", grad_y, x);
  const int64_t n = x.size(-1);
  const int64_t m = n == 0 ? 0 : x.numel() / n;
  LayerNormGrads grads;
  grads.addend_folded = grad_x_addend.defined() && m > 0 && n > 0 && grad_x_addend.shape() == x.shape() &&
                        grad_x_addend.dtype() == x.dtype() && grad_x_addend.device() == x.device() &&
                        grad_x_addend.is_contiguous();
  const Tensor addend = grads.addend_folded ? reshape(grad_x_addend, {m, n}) : Tensor();
  Tensor grad_x = empty({m, n}, x.dtype(), x.device());
  if (need_weight_grads) {
    grads.grad_weight = empty({n}, x.dtype(), x.device());
    grads.grad_bias = empty({n}, x.dtype(), x.device());
  }
  if (grad_x.numel() > 0) {
    backend_for(x.device()).layer_norm_backward(
        reshape(grad_y.contiguous(), {m, n}), reshape(x.contiguous(), {m, n}),
        weight.defined() ? weight.contiguous() : weight, mean, rstd, addend, grad_x, grads.grad_weight,
        grads.grad_bias);
  } else if (need_weight_grads) {
    fill_(grads.grad_weight, 0.0);
    fill_(grads.grad_bias, 0.0);
  }
  grads.grad_x = reshape(grad_x, x.shape());
  return grads;
}

}  // namespace mms::ops
