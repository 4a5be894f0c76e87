// Dispatch for matmul and linear. Everything becomes one batched GEMM call on 3-D
// operands; a transposed-contiguous operand is passed with a transpose flag instead
// of being copied, and a batch of one broadcasts without being materialised.
// Two bfloat16 operands give a float32 result (float32 accumulation): the mixed GEMM
// that autocast (autograd/autocast.h) runs; or, asked for, a bfloat16 result (the same
// float32 accumulation, rounded once on the way out: autocast's bf16 activations).
#include "tensor/ops.h"

namespace mms::ops {

namespace {
// bf16 x bf16 accumulates and returns in float32 unless bfloat16 is asked for; every
// other dtype returns itself.
DType gemm_output_dtype(const char* op, DType operands, std::optional<DType> asked) {
  const DType natural = operands == DType::BFloat16 ? DType::Float32 : operands;
  if (!asked || *asked == natural) return natural;
  MMS_CHECK(operands == DType::BFloat16 && *asked == DType::BFloat16, op, ": ", dtype_name(operands),
            " operands give a ", dtype_name(natural), " result", operands == DType::BFloat16 ? " or a bfloat16 one" : "",
            ", not ", dtype_name(*asked));
  return *asked;
}

void check_gemm_dtype(const char* op, const Tensor& x) {
  MMS_CHECK(x.dtype() == DType::Float32 || x.dtype() == DType::Float64 || x.dtype() == DType::BFloat16,
            op, ": expected a float32, float64 or bfloat16 tensor, got ", dtype_name(x.dtype()), " ",
            shape_str(x.shape()));
}

// Views t (shape [*batch, rows, cols], already broadcast to `batch`) as a contiguous
// 3-D GEMM operand, returning whether it is stored transposed.
struct GemmOperand {
  Tensor tensor;  // [B or 1, rows, cols] or [B or 1, cols, rows] when transposed
  bool transposed = false;
};

GemmOperand gemm_operand(const Tensor& t, const Shape& batch) {
  const int64_t rows = t.size(-2), cols = t.size(-1);
  int64_t own_batch = 1;
  for (int64_t d = 0; d < t.dim() - 2; ++d) own_batch *= t.size(d);
  const int64_t batch_numel = shape_numel(batch);
  GemmOperand op;
  if (own_batch == 1 && batch_numel > 1) {
    // Shared across the batch (e.g. a weight): keep a single copy.
    Tensor mat = reshape(t, {rows, cols});
    if (mat.stride(0) == 1 && mat.stride(1) == rows && rows > 1) {
      op.tensor = make_view(mat, {1, cols, rows}, {cols * rows, rows, 1}, mat.offset());
      op.transposed = true;
    } else {
      op.tensor = reshape(mat.contiguous(), {1, rows, cols});
    }
    return op;
  }
  Shape full_shape = batch;
  full_shape.push_back(rows);
  full_shape.push_back(cols);
  Tensor expanded = expand(t, full_shape);
  Tensor swapped = transpose(expanded, -1, -2);
  if (!expanded.is_contiguous() && swapped.is_contiguous()) {
    op.tensor = reshape(swapped, {batch_numel, cols, rows});
    op.transposed = true;
  } else {
    op.tensor = reshape(expanded.contiguous(), {batch_numel, rows, cols});
  }
  return op;
}
}  // namespace

Tensor matmul(const Tensor& a_in, const Tensor& b_in, std::optional<DType> out_dtype) {
  check_same_device("matmul", a_in, b_in);
  check_same_dtype("matmul", a_in, b_in);
  check_gemm_dtype("matmul", a_in);
  MMS_CHECK(a_in.dim() >= 1 && b_in.dim() >= 1, "matmul: both operands need at least 1 dim, got ",
            shape_str(a_in.shape()), " and ", shape_str(b_in.shape()));
  const bool a_vector = a_in.dim() == 1, b_vector = b_in.dim() == 1;
  Tensor a = a_vector ? unsqueeze(a_in, 0) : a_in;
  Tensor b = b_vector ? unsqueeze(b_in, 1) : b_in;
  MMS_CHECK(a.size(-1) == b.size(-2), "matmul: shapes ", shape_str(a_in.shape()), " and ",
            shape_str(b_in.shape()), " do not agree on the inner dimension (", a.size(-1), " vs ",
            b.size(-2), ")");
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  Shape batch_a(a.shape().begin(), a.shape().end() - 2);
  Shape batch_b(b.shape().begin(), b.shape().end() - 2);
  const Shape batch = broadcast_shapes(batch_a, batch_b, "matmul");
  const int64_t batch_numel = shape_numel(batch);

  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  Tensor out = empty({batch_numel, m, n}, gemm_output_dtype("matmul", a.dtype(), out_dtype), a.device());
  if (out.numel() > 0) {
    if (k == 0) {
      fill_(out, 0.0);
    } else {
      GemmOperand ga = gemm_operand(a, batch), gb = gemm_operand(b, batch);
      backend_for(a.device()).bmm(ga.tensor, gb.tensor, out, ga.transposed, gb.transposed, 1.0, 0.0);
    }
  }
  Tensor result = reshape(out, out_shape);
  if (a_vector) result = squeeze(result, -2);
  if (b_vector) result = squeeze(result, -1);
  return result;
}

namespace {
// linear's operands, checked, with x and weight as the 2-D contiguous GEMM operands.
struct LinearOperands {
  Tensor x2;        // [rows, in], contiguous
  Tensor weight;    // [out, in], contiguous
  Tensor bias;      // [out] or undefined
  int64_t rows = 0, in = 0, out_features = 0;
  Shape out_shape;  // x's shape with the last dim replaced by out
  DType out_dtype = DType::Float32;
};

LinearOperands linear_operands(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias,
                               std::optional<DType> out_dtype = std::nullopt) {
  check_same_device(op, x, weight);
  check_same_dtype(op, x, weight);
  check_gemm_dtype(op, x);
  MMS_CHECK(weight.dim() == 2, op, ": weight must be [out, in], got ", shape_str(weight.shape()));
  MMS_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), op, ": input ", shape_str(x.shape()),
            " does not end in in_features = ", weight.size(1), " of weight ", shape_str(weight.shape()));
  LinearOperands operands;
  operands.in = weight.size(1);
  operands.out_features = weight.size(0);
  operands.rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));  // 1 for a vector
  operands.out_shape = x.shape();
  operands.out_shape.back() = operands.out_features;
  operands.out_dtype = gemm_output_dtype(op, x.dtype(), out_dtype);
  if (bias.defined()) {
    check_same_device(op, x, bias);
    if (operands.out_dtype == x.dtype()) {
      check_same_dtype(op, x, bias);
    } else {
      const std::string out_name = dtype_name(operands.out_dtype);
      MMS_CHECK(bias.dtype() == operands.out_dtype, op, ": bias ", shape_str(bias.shape()), " is ",
                dtype_name(bias.dtype()), ", but ", dtype_name(x.dtype()), " inputs give a ", out_name,
                " output and the bias must be ", out_name);
    }
    MMS_CHECK(bias.dim() == 1 && bias.size(0) == operands.out_features, op, ": bias ",
              shape_str(bias.shape()), " does not match out_features = ", operands.out_features);
    operands.bias = bias.contiguous();
  }
  operands.x2 = reshape(x.contiguous(), {operands.rows, operands.in});
  operands.weight = weight.contiguous();
  return operands;
}

// The device's fused GEMM + epilogue (Backend::linear_epilogue) into out [rows, out]
// (and pre_activation, when defined); false when it has none for these operands.
bool try_linear_epilogue(const LinearOperands& operands, LinearEpilogue epilogue, Tensor& out,
                         Tensor& pre_activation) {
  if (!operands.bias.defined() || operands.rows == 0 || operands.in == 0 || operands.out_features == 0)
    return false;
  return backend_for(out.device())
      .linear_epilogue(operands.x2, operands.weight, operands.bias, epilogue, out, pre_activation);
}

// out [rows, out] = x2 @ weight^T + bias: fused where the device can, else the output
// starts as the bias and the GEMM accumulates onto it (beta = 1).
void linear_into(const LinearOperands& operands, Tensor& out) {
  Tensor no_pre_activation;
  if (try_linear_epilogue(operands, LinearEpilogue::Bias, out, no_pre_activation)) return;
  double beta = 0.0;
  if (operands.bias.defined()) {
    copy_(out, operands.bias);
    beta = 1.0;
  }
  if (out.numel() == 0) return;
  if (operands.in == 0) {
    if (!operands.bias.defined()) fill_(out, 0.0);
    return;
  }
  Tensor out3 = reshape(out, {1, operands.rows, operands.out_features});
  backend_for(out.device())
      .bmm(reshape(operands.x2, {1, operands.rows, operands.in}),
           reshape(operands.weight, {1, operands.out_features, operands.in}), out3, false, true, 1.0, beta);
}
}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias, std::optional<DType> out_dtype) {
  const LinearOperands operands = linear_operands("linear", x, weight, bias, out_dtype);
  Tensor out = empty({operands.rows, operands.out_features}, operands.out_dtype, x.device());
  linear_into(operands, out);
  return reshape(out, operands.out_shape);
}

LinearGeluResult linear_gelu_tanh(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                  bool keep_pre_activation) {
  const LinearOperands operands = linear_operands("linear_gelu_tanh", x, weight, bias);
  const Shape rows_shape = {operands.rows, operands.out_features};
  Tensor y = empty(rows_shape, operands.out_dtype, x.device());
  Tensor h = keep_pre_activation ? empty(rows_shape, operands.out_dtype, x.device()) : Tensor();
  if (!try_linear_epilogue(operands, LinearEpilogue::GeluTanhBias, y, h)) {
    // Unfused: the linear (itself with the bias epilogue where the device has one), then
    // the elementwise GELU.
    if (!h.defined()) h = empty(rows_shape, operands.out_dtype, x.device());
    linear_into(operands, h);
    y = unary(UnaryOp::GeluTanh, h);
  }
  return {reshape(y, operands.out_shape), keep_pre_activation ? reshape(h, operands.out_shape) : Tensor()};
}

Tensor linear_bias_grad(const Tensor& grad_out) {
  MMS_CHECK(grad_out.dim() == 2, "linear_bias_grad: grad_out must be [rows, out], got ", shape_str(grad_out.shape()));
  check_gemm_dtype("linear_bias_grad", grad_out);
  if (grad_out.dtype() != DType::BFloat16) return sum(grad_out, {0});
  const Tensor ones_row = full({1, grad_out.size(0)}, 1.0, DType::BFloat16, grad_out.device());
  return reshape(matmul(ones_row, grad_out), {grad_out.size(1)});
}

LinearWeightGrads linear_weight_grad(const Tensor& grad_out, const Tensor& x, bool with_bias) {
  check_same_device("linear_weight_grad", grad_out, x);
  check_same_dtype("linear_weight_grad", grad_out, x);
  check_gemm_dtype("linear_weight_grad", x);
  MMS_CHECK(grad_out.dim() == 2 && x.dim() == 2 && grad_out.size(0) == x.size(0),
            "linear_weight_grad: grad_out ", shape_str(grad_out.shape()), " and x ", shape_str(x.shape()),
            " must be [rows, out] and [rows, in] with the same rows");
  const int64_t rows = x.size(0), in = x.size(1), out_features = grad_out.size(1);
  // The fused GEMM where the device has one for these operands as they are (the
  // backward's are contiguous); the outputs are allocated only then, so a device without
  // it (the CPU) pays nothing. The unfused matmul takes a transposed operand as it is.
  Backend& backend = backend_for(x.device());
  if (with_bias && rows > 0 && in > 0 && out_features > 0 && grad_out.is_contiguous() && x.is_contiguous() &&
      backend.may_fuse_linear_weight_grad(x.dtype())) {
    const DType dtype = x.dtype() == DType::BFloat16 ? DType::Float32 : x.dtype();
    LinearWeightGrads fused{empty({out_features, in}, dtype, x.device()), empty({out_features}, dtype, x.device())};
    if (backend.linear_weight_grad(grad_out, x, fused.weight, fused.bias)) return fused;
  }
  return {matmul(transpose(grad_out, 0, 1), x), with_bias ? linear_bias_grad(grad_out) : Tensor()};
}

}  // namespace mms::ops
