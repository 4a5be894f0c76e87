// CudaBackend: copies, fills, random tensors, dropout and the elementwise ops (cuda/copy.h,
// cuda/random.h, cuda/dropout.h, cuda/elementwise.h).
#include "cuda/concat.h"
#include "cuda/copy.h"
#include "cuda/dropout.h"
#include "cuda/elementwise.h"
#include "cuda/random.h"
#include "cuda/runtime.h"
#include "tensor/cuda_glue/cuda_glue.h"

namespace mms {

using namespace cuda_glue;

static_assert(static_cast<int>(UnaryOp::Clamp) == static_cast<int>(cuda::UnaryKind::Clamp) &&
                  static_cast<int>(UnaryOp::QuickGelu) == static_cast<int>(cuda::UnaryKind::QuickGelu) &&
                  static_cast<int>(UnaryOp::AddScalar) == static_cast<int>(cuda::UnaryKind::AddScalar),
              "cuda::UnaryKind must list the ops in mms::UnaryOp's order");
static_assert(static_cast<int>(BinaryOp::Ge) == static_cast<int>(cuda::BinaryKind::Ge) &&
                  static_cast<int>(BinaryOp::Eq) == static_cast<int>(cuda::BinaryKind::Eq) &&
                  static_cast<int>(BinaryOp::Minimum) == static_cast<int>(cuda::BinaryKind::Minimum),
              "cuda::BinaryKind must list the ops in mms::BinaryOp's order");

void CudaBackend::copy(const Tensor& src, Tensor& dst) {
  check_cuda("copy", "source", src);
  check_cuda("copy", "destination", dst);
  const auto layouts = joint_layouts("copy", {&dst, &src});
  cuda::copy_strided(src.raw_data(), scalar_type(src.dtype()), dst.raw_data(), scalar_type(dst.dtype()),
                     layouts.data(), dst.numel(), cuda::stream());
}

// One launch for the whole cat (cuda/concat.h) instead of a copy per input.
bool CudaBackend::concat_contiguous(const std::vector<Tensor>& inputs, Tensor& out) {
  const char* op = "cat";
  check_cuda(op, "output", out);
  check_contiguous(op, "output", out);
  std::vector<const void*> sources;
  std::vector<int64_t> bytes;
  int64_t total = 0;
  for (const Tensor& t : inputs) {
    check_cuda(op, "input", t);
    check_contiguous(op, "input", t);
    MMS_CHECK(t.dtype() == out.dtype(), op, ": input ", dtype_name(t.dtype()), " into ", dtype_name(out.dtype()));
    sources.push_back(t.raw_data());
    bytes.push_back(t.numel() * int64_t(dtype_size(t.dtype())));
    total += t.numel();
  }
  MMS_CHECK(total == out.numel(), op, ": inputs hold ", total, " elements, the output ", out.numel());
  cuda::concat_bytes(sources.data(), bytes.data(), int64_t(sources.size()), out.raw_data(), cuda::stream());
  return true;
}

void CudaBackend::fill(Tensor& dst, double value) {
  check_cuda("fill", "destination", dst);
  check_contiguous("fill", "destination", dst);
  cuda::fill(dst.raw_data(), scalar_type(dst.dtype()), dst.numel(), value, cuda::stream());
}

void CudaBackend::arange(Tensor& dst, double start, double step) {
  check_cuda("arange", "destination", dst);
  check_contiguous("arange", "destination", dst);
  cuda::arange(dst.raw_data(), scalar_type(dst.dtype()), dst.numel(), start, step, cuda::stream());
}

void CudaBackend::random(RandomKind kind, uint64_t seed, uint64_t offset, double a, double b,
                         Tensor& dst) {
  const char* op = kind == RandomKind::Uniform ? "rand" : "randn";
  check_cuda(op, "destination", dst);
  check_contiguous(op, "destination", dst);
  MMS_CHECK(dst.dtype() == DType::Float32 || dst.dtype() == DType::Float64, op,
            ": CUDA draws float32 or float64 tensors, got ", dtype_name(dst.dtype()));
  if (kind == RandomKind::Uniform)
    cuda::random_uniform(dst.raw_data(), scalar_type(dst.dtype()), dst.numel(), seed, offset, a, b,
                         cuda::stream());
  else
    cuda::random_normal(dst.raw_data(), scalar_type(dst.dtype()), dst.numel(), seed, offset, a, b,
                        cuda::stream());
}

void CudaBackend::dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset, Tensor& out) {
  check_cuda("dropout", "input", x);
  check_cuda("dropout", "output", out);
  check_contiguous("dropout", "input", x);
  check_contiguous("dropout", "output", out);
  check_shape("dropout", "output", out, x.shape());
  MMS_CHECK((x.dtype() == DType::Float32 || x.dtype() == DType::Float64) && out.dtype() == x.dtype(),
            "dropout: CUDA takes float32 or float64 input and output of one dtype, got ",
            dtype_name(x.dtype()), " and ", dtype_name(out.dtype()));
  cuda::dropout(x.raw_data(), out.raw_data(), scalar_type(x.dtype()), x.numel(), p, seed, offset,
                cuda::stream());
}

void CudaBackend::unary(UnaryOp op, const Tensor& x, Tensor& out, double alpha, double beta) {
  const char* name = unary_op_name(op);
  if (x.dtype() == DType::BFloat16) {  // autocast's bf16 activations: float32 math, bf16 storage
    check_cuda(name, "input", x);
    check_cuda(name, "output", out);
    MMS_CHECK(out.dtype() == DType::BFloat16, name, ": output is ", dtype_name(out.dtype()), " for a bfloat16 input");
    const auto layouts = joint_layouts(name, {&out, &x});
    cuda::unary_bf16(static_cast<cuda::UnaryKind>(op), static_cast<const uint16_t*>(x.raw_data()),
                     static_cast<uint16_t*>(out.raw_data()), layouts.data(), out.numel(), float(alpha), float(beta),
                     cuda::stream());
    return;
  }
  check_f32(name, "input", x);
  check_f32(name, "output", out);
  const auto layouts = joint_layouts(name, {&out, &x});
  cuda::unary_f32(static_cast<cuda::UnaryKind>(op), static_cast<const float*>(x.raw_data()),
                  static_cast<float*>(out.raw_data()), layouts.data(), out.numel(), float(alpha),
                  float(beta), cuda::stream());
}

void CudaBackend::unary_backward(UnaryOp op, const Tensor& grad_out, const Tensor& x, Tensor& grad_in,
                                 double alpha, double beta) {
  const char* name = unary_op_name(op);
  if (x.dtype() == DType::BFloat16) {  // as the forward
    check_cuda(name, "grad_out", grad_out);
    check_cuda(name, "input", x);
    check_cuda(name, "grad_in", grad_in);
    MMS_CHECK(grad_out.dtype() == DType::BFloat16 && grad_in.dtype() == DType::BFloat16, name,
              " backward: grad_out (", dtype_name(grad_out.dtype()), ") and grad_in (", dtype_name(grad_in.dtype()),
              ") must be bfloat16 like the input");
    const auto layouts = joint_layouts(name, {&grad_in, &grad_out, &x});
    cuda::unary_backward_bf16(static_cast<cuda::UnaryKind>(op), static_cast<const uint16_t*>(grad_out.raw_data()),
                              static_cast<const uint16_t*>(x.raw_data()), static_cast<uint16_t*>(grad_in.raw_data()),
                              layouts.data(), grad_in.numel(), float(alpha), float(beta), cuda::stream());
    return;
  }
  check_f32(name, "grad_out", grad_out);
  check_f32(name, "input", x);
  check_f32(name, "grad_in", grad_in);
  const auto layouts = joint_layouts(name, {&grad_in, &grad_out, &x});
  cuda::unary_backward_f32(static_cast<cuda::UnaryKind>(op), static_cast<const float*>(grad_out.raw_data()),
                           static_cast<const float*>(x.raw_data()), static_cast<float*>(grad_in.raw_data()),
                           layouts.data(), grad_in.numel(), float(alpha), float(beta), cuda::stream());
}

void CudaBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  const char* name = binary_op_name(op);
  check_cuda(name, "a", a);
  check_cuda(name, "b", b);
  check_cuda(name, "output", out);
  MMS_CHECK(a.dtype() == b.dtype(), name, ": operands are ", dtype_name(a.dtype()), " and ",
            dtype_name(b.dtype()));
  const DType dtype = a.dtype();
  const bool supported = dtype == DType::Float32 || dtype == DType::Int64 || dtype == DType::Int32 ||
                         dtype == DType::UInt8 || dtype == DType::Bool;
  const bool float_only = op == BinaryOp::Div || op == BinaryOp::Pow;
  MMS_CHECK(supported && (!float_only || dtype == DType::Float32), name, ": not supported on CUDA for ",
            dtype_name(dtype), " (float32 for every op; int64/int32/uint8/bool for +, -, *, min, max "
            "and comparisons)");
  const bool comparison = op >= BinaryOp::Eq;
  MMS_CHECK(out.dtype() == (comparison ? DType::Bool : dtype), name, ": output is ",
            dtype_name(out.dtype()), ", expected ", dtype_name(comparison ? DType::Bool : dtype));
  const auto layouts = joint_layouts(name, {&out, &a, &b});
  cuda::binary(static_cast<cuda::BinaryKind>(op), scalar_type(dtype), a.raw_data(), b.raw_data(),
               out.raw_data(), layouts.data(), out.numel(), cuda::stream());
}

void CudaBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out) {
  check_cuda("where", "cond", cond);
  check_cuda("where", "a", a);
  check_cuda("where", "b", b);
  check_cuda("where", "output", out);
  MMS_CHECK(cond.dtype() == DType::Bool || cond.dtype() == DType::UInt8,
            "where: cond must be bool or uint8, got ", dtype_name(cond.dtype()));
  MMS_CHECK(a.dtype() == out.dtype() && b.dtype() == out.dtype(), "where: a (", dtype_name(a.dtype()),
            "), b (", dtype_name(b.dtype()), ") and output (", dtype_name(out.dtype()),
            ") must share a dtype");
  const auto layouts = joint_layouts("where", {&out, &cond, &a, &b});
  cuda::where(static_cast<const uint8_t*>(cond.raw_data()), a.raw_data(), b.raw_data(), out.raw_data(),
              out.element_size(), layouts.data(), out.numel(), cuda::stream());
}

}  // namespace mms
