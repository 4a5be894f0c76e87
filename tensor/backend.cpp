// Which backend runs an op, and the CPU-only build's answers for CUDA requests.
#include "tensor/backend.h"

#include <cstring>

namespace mms {

const char* unary_op_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::Neg: return "neg";
    case UnaryOp::Exp: return "exp";
    case UnaryOp::Log: return "log";
    case UnaryOp::Log1p: return "log1p";
    case UnaryOp::Sqrt: return "sqrt";
    case UnaryOp::Rsqrt: return "rsqrt";
    case UnaryOp::Abs: return "abs";
    case UnaryOp::Sign: return "sign";
    case UnaryOp::Reciprocal: return "reciprocal";
    case UnaryOp::Square: return "square";
    case UnaryOp::Tanh: return "tanh";
    case UnaryOp::Sigmoid: return "sigmoid";
    case UnaryOp::Relu: return "relu";
    case UnaryOp::GeluErf: return "gelu";
    case UnaryOp::GeluTanh: return "gelu_tanh";
    case UnaryOp::QuickGelu: return "quick_gelu";
    case UnaryOp::AddScalar: return "add_scalar";
    case UnaryOp::MulScalar: return "mul_scalar";
    case UnaryOp::PowScalar: return "pow_scalar";
    case UnaryOp::RSubScalar: return "rsub_scalar";
    case UnaryOp::RDivScalar: return "rdiv_scalar";
    case UnaryOp::Clamp: return "clamp";
  }
  return "unary?";
}

const char* binary_op_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add: return "add";
    case BinaryOp::Sub: return "sub";
    case BinaryOp::Mul: return "mul";
    case BinaryOp::Div: return "div";
    case BinaryOp::Pow: return "pow";
    case BinaryOp::Maximum: return "maximum";
    case BinaryOp::Minimum: return "minimum";
    case BinaryOp::Eq: return "eq";
    case BinaryOp::Ne: return "ne";
    case BinaryOp::Lt: return "lt";
    case BinaryOp::Le: return "le";
    case BinaryOp::Gt: return "gt";
    case BinaryOp::Ge: return "ge";
  }
  return "binary?";
}

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Max: return "max";
    case ReduceOp::Min: return "min";
    case ReduceOp::ArgMax: return "argmax";
    case ReduceOp::LogSumExp: return "logsumexp";
  }
  return "reduce?";
}

double Backend::sum_of_squares(const std::vector<Tensor>& tensors) {
  if (tensors.empty()) return 0.0;
  Tensor out = empty({}, DType::Float64, tensors.front().device());
  sum_of_squares_into(tensors, out);
  return out.item();
}

void Backend::attention_tiles(const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool, double, Tensor&,
                              Tensor&) {
  fail("attention_tiles: the ", name(), " backend has no tensor-core attention tiles");
}

void Backend::attention_tiles_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                       const Tensor&, const Tensor&, bool, double, Tensor&, Tensor&, Tensor&) {
  fail("attention_tiles_backward: the ", name(), " backend has no tensor-core attention tiles");
}

Backend& backend_for(Device device) {
  return device.is_cpu() ? cpu_backend() : cuda_backend();
}

#ifndef MMS_WITH_CUDA
// CPU-only build: every CUDA request is a clear error, and host "device" memory
// operations reduce to plain memcpy.
namespace {
[[noreturn]] void no_cuda(const char* what) {
  fail(what, ": this build of mmscale has no CUDA support (configure with -DMMS_CUDA=ON on a "
             "machine with the CUDA toolkit)");
}
}  // namespace

Backend& cuda_backend() { no_cuda("cuda_backend"); }
bool cuda_available() { return false; }
int cuda_device_count() { return 0; }
void* device_allocate(size_t, Device device) { no_cuda(("allocate on " + device.str()).c_str()); }
void device_deallocate(void*, Device) {}
void device_memcpy(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  if (!dst_device.is_cpu() || !src_device.is_cpu()) no_cuda("device_memcpy");
  std::memcpy(dst, src, nbytes);
}
void device_synchronize(Device) {}
int64_t device_sync_count() { return 0; }
#endif

}  // namespace mms
