// Dispatch for matmul and linear. Everything becomes one batched GEMM call on 3-D
// operands; a transposed-contiguous operand is passed with a transpose flag instead
// of being copied, and a batch of one broadcasts without being materialised.
// Two bfloat16 operands give a float32 result (float32 accumulation): the mixed GEMM
// that autocast (autograd/autocast.h) runs.
#include "tensor/ops.h"

namespace mms::ops {

namespace {
// bf16 x bf16 accumulates and returns in float32; every other dtype returns itself.
DType gemm_output_dtype(DType operands) {
  return operands == DType::BFloat16 ? DType::Float32 : operands;
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

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
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
  Tensor out = empty({batch_numel, m, n}, gemm_output_dtype(a.dtype()), a.device());
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

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_same_device("linear", x, weight);
  check_same_dtype("linear", x, weight);
  check_gemm_dtype("linear", x);
  MMS_CHECK(weight.dim() == 2, "linear: weight must be [out, in], got ", shape_str(weight.shape()));
  MMS_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "linear: input ", shape_str(x.shape()),
            " does not end in in_features = ", weight.size(1), " of weight ",
            shape_str(weight.shape()));
  const int64_t in = weight.size(1), out_features = weight.size(0);
  const int64_t rows = in == 0 ? 0 : x.numel() / in;
  Shape out_shape = x.shape();
  out_shape.back() = out_features;
  const DType out_dtype = gemm_output_dtype(x.dtype());
  Tensor out = empty({1, rows, out_features}, out_dtype, x.device());
  double beta = 0.0;
  if (bias.defined()) {
    check_same_device("linear", x, bias);
    if (out_dtype == x.dtype()) {
      check_same_dtype("linear", x, bias);
    } else {
      MMS_CHECK(bias.dtype() == out_dtype, "linear: bias ", shape_str(bias.shape()), " is ",
                dtype_name(bias.dtype()), ", but ", dtype_name(x.dtype()), " inputs give a ",
                dtype_name(out_dtype), " output and the bias must be ", dtype_name(out_dtype));
    }
    MMS_CHECK(bias.dim() == 1 && bias.size(0) == out_features, "linear: bias ",
              shape_str(bias.shape()), " does not match out_features = ", out_features);
    // Start from the bias and let the GEMM accumulate onto it (beta = 1): one pass less.
    Tensor rows_view = reshape(out, {rows, out_features});
    copy_(rows_view, bias);
    beta = 1.0;
  }
  if (out.numel() > 0) {
    if (in == 0) {
      if (!bias.defined()) fill_(out, 0.0);
    } else {
      Tensor x3 = reshape(x.contiguous(), {1, rows, in});
      Tensor w3 = reshape(weight.contiguous(), {1, out_features, in});
      backend_for(x.device()).bmm(x3, w3, out, false, true, 1.0, beta);
    }
  }
  return reshape(out, out_shape);
}

}  // namespace mms::ops
