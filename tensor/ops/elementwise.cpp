// Dispatch for elementwise ops: broadcast the operands, allocate the output, and
// hand the device kernel inputs that already have the output's shape.
#include <cmath>
#include <limits>

#include "tensor/ops.h"

namespace mms::ops {

namespace {
// float32 or float64, or bfloat16 (autocast's bf16 activations: the backends compute in
// float32 and round once).
void check_unary_dtype(const char* op, const Tensor& x) {
  if (x.dtype() != DType::BFloat16) check_floating(op, x);
}
}  // namespace

Tensor unary(UnaryOp op, const Tensor& x, double alpha, double beta) {
  check_unary_dtype(unary_op_name(op), x);
  Tensor out = empty(x.shape(), x.dtype(), x.device());
  if (out.numel() > 0) backend_for(x.device()).unary(op, x, out, alpha, beta);
  return out;
}

Tensor unary_backward(UnaryOp op, const Tensor& grad_out, const Tensor& x, double alpha,
                      double beta) {
  const char* name = unary_op_name(op);
  check_unary_dtype(name, x);
  check_same_dtype(name, grad_out, x);
  check_same_device(name, grad_out, x);
  MMS_CHECK(grad_out.shape() == x.shape(), name, " backward: gradient shape ",
            shape_str(grad_out.shape()), " differs from input shape ", shape_str(x.shape()));
  Tensor grad_in = empty(x.shape(), x.dtype(), x.device());
  if (x.numel() > 0) backend_for(x.device()).unary_backward(op, grad_out, x, grad_in, alpha, beta);
  return grad_in;
}

Tensor clamp(const Tensor& x, std::optional<double> low, std::optional<double> high) {
  const double inf = std::numeric_limits<double>::infinity();
  const double lo = low.value_or(-inf), hi = high.value_or(inf);
  MMS_CHECK(!(lo > hi), "clamp: min ", lo, " is greater than max ", hi);
  return unary(UnaryOp::Clamp, x, lo, hi);
}

namespace {
bool is_comparison(BinaryOp op) {
  return op == BinaryOp::Eq || op == BinaryOp::Ne || op == BinaryOp::Lt || op == BinaryOp::Le ||
         op == BinaryOp::Gt || op == BinaryOp::Ge;
}
}  // namespace

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_op_name(op);
  check_same_device(name, a, b);
  check_same_dtype(name, a, b);
  // Division and powers need a floating type; +, -, *, max, min are exact on integers
  // too (the kernels reject Bool arithmetic with a clear error).
  if (op == BinaryOp::Div || op == BinaryOp::Pow) check_floating(name, a);
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = empty(shape, is_comparison(op) ? DType::Bool : a.dtype(), a.device());
  if (out.numel() > 0) backend_for(a.device()).binary(op, expand(a, shape), expand(b, shape), out);
  return out;
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_same_device("where", cond, a);
  check_same_device("where", a, b);
  check_same_dtype("where", a, b);
  MMS_CHECK(cond.dtype() == DType::Bool || cond.dtype() == DType::UInt8,
            "where: condition must be bool or uint8, got ", dtype_name(cond.dtype()));
  const Shape shape =
      broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor out = empty(shape, a.dtype(), a.device());
  if (out.numel() > 0)
    backend_for(a.device()).where(expand(cond, shape), expand(a, shape), expand(b, shape), out);
  return out;
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  return where(mask, full({}, value, x.dtype(), x.device()), x);
}

}  // namespace mms::ops
