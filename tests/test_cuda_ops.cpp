// CUDA vs CPU parity: every op of the CUDA backend against the CPU implementation on
// random non-zero inputs (odd sizes, broadcasting, non-contiguous views), forward and
// backward, at DESIGN.md's float32 tolerance (1e-4 relative to max |ref|). Skips with a
// visible message on a machine without a GPU (and in a build without CUDA).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "tensor/backend.h"
#include "tensor/ops.h"
#include "tensor/tensor.h"
#include "tensor/view.h"

#ifdef MMS_WITH_CUDA
#include "cuda/attention.h"
#include "cuda/attention_tiles.h"
#include "cuda/copy.h"
#include "cuda/cudnn_attention.h"
#include "cuda/elementwise.h"
#include "cuda/gemm.h"
#include "cuda/layernorm.h"
#include "cuda/reduce.h"
#include "cuda/runtime.h"
#include "cuda/softmax.h"
#endif

#include "device_test_utils.h"

using namespace mms;

namespace {

const Device kGpu = Device::cuda(0);

// Whether the runtime syncs after every launch (MMS_CUDA_DEBUG_SYNC=1 or a debug build),
// which turns on the checks that need a host copy.
bool debug_sync_enabled() {
#ifdef MMS_WITH_CUDA
  return cuda::debug_sync_enabled();
#else
  return false;
#endif
}
constexpr double kF32Tolerance = 1e-4;

// max |got - ref| / max |ref| over all elements; equal infinities match; NaN fails.
double relative_error(const Tensor& got, const Tensor& ref) {
  REQUIRE(got.shape() == ref.shape());
  const std::vector<double> g = got.to(Device::cpu()).to_vector<double>();
  const std::vector<double> r = ref.to(Device::cpu()).to_vector<double>();
  double max_ref = 0.0, max_diff = 0.0;
  for (size_t i = 0; i < r.size(); ++i) {
    if (std::isnan(g[i]) || std::isnan(r[i])) return std::numeric_limits<double>::infinity();
    if (std::isinf(g[i]) || std::isinf(r[i])) {
      if (g[i] != r[i]) return std::numeric_limits<double>::infinity();
      continue;
    }
    max_ref = std::max(max_ref, std::abs(r[i]));
    max_diff = std::max(max_diff, std::abs(g[i] - r[i]));
  }
  return max_ref == 0.0 ? max_diff : max_diff / max_ref;
}

#define CHECK_CLOSE(got, ref, what)                                           \
  do {                                                                        \
    const double error_ = relative_error((got), (ref));                       \
    INFO(what << ": relative error " << error_);                              \
    CHECK(error_ <= kF32Tolerance);                                           \
  } while (0)

Tensor random_normal(const Shape& shape, uint64_t seed) { return randn(shape, seed, 0, DType::Float32); }
// Strictly positive, away from 0 (for log, sqrt, reciprocal, pow).
Tensor random_positive(const Shape& shape, uint64_t seed) {
  return ops::add_scalar(ops::abs(random_normal(shape, seed)), 0.5);
}
Tensor gpu(const Tensor& t) { return t.to(kGpu); }

const std::vector<Shape> kShapes = {{1}, {7}, {3, 5}, {4, 33, 7}, {2, 3, 129}, {1000}};

}  // namespace

TEST_CASE("cuda: availability and transfers round-trip") {
  SKIP_WITHOUT_GPU();
  CHECK(cuda_device_count() >= 1);
  Tensor x = random_normal({3, 17}, 1);
  Tensor back = x.to(kGpu).to(Device::cpu());
  CHECK(relative_error(back, x) == 0.0);
  Tensor i = arange(0, 11, 1, DType::Int64);
  CHECK(i.to(kGpu).to(Device::cpu()).to_vector<int64_t>() == i.to_vector<int64_t>());
  device_synchronize(kGpu);
}

// ops::cat of contiguous inputs along dim 0 (or after size-1 dims) is one launch
// (cuda/concat.cu) that moves the widest word dividing every address and size; other
// cats copy slice by slice. Both must give the CPU's bytes exactly. The inputs are made
// on the GPU (a view or transpose made on the CPU would arrive as a fresh contiguous
// copy), and where the inputs lie end to end the one-launch path is also called
// directly, so a cat that silently fell back to the slices would not pass.
TEST_CASE("cuda: cat in one launch for inputs laid end to end (every word size, packs, views), else by slices") {
  SKIP_WITHOUT_GPU();
  uint64_t seed = 2100;
  enum class Path { OneLaunch, Slices };
  auto check_cat = [&](const std::vector<Tensor>& on_gpu, int64_t dim, Path path, const char* what) {
    INFO(what);
    std::vector<Tensor> on_cpu;
    for (const Tensor& t : on_gpu) on_cpu.push_back(t.to(Device::cpu()));
    const Tensor ref = ops::cat(on_cpu, dim), got = ops::cat(on_gpu, dim).to(Device::cpu());
    REQUIRE(got.shape() == ref.shape());
    REQUIRE(got.dtype() == ref.dtype());
    const size_t bytes = size_t(ref.numel()) * dtype_size(ref.dtype());
    CHECK(std::memcmp(got.raw_data(), ref.raw_data(), bytes) == 0);
    if (path == Path::OneLaunch) {
      Tensor direct = empty(ref.shape(), ref.dtype(), kGpu);
      REQUIRE(cuda_backend().concat_contiguous(on_gpu, direct));
      CHECK(std::memcmp(direct.to(Device::cpu()).raw_data(), ref.raw_data(), bytes) == 0);
    }
  };
  auto floats = [&](const Shape& shape) { return gpu(random_normal(shape, ++seed)); };
  const Path one = Path::OneLaunch;
  // q, k, v weights and biases as training stacks them: 16-byte words
  check_cat({floats({64, 64}), floats({64, 64}), floats({64, 64})}, 0, one, "weights, 16-byte words");
  check_cat({floats({768}), floats({768}), floats({768})}, 0, one, "biases");
  // sizes that are not multiples of 16 bytes: 8-, 4-, 2- and 1-byte words
  check_cat({floats({3, 2}), floats({1, 2})}, 0, one, "8-byte words");
  check_cat({floats({3, 5}), floats({2, 5}), floats({7, 5})}, 0, one, "4-byte words");
  check_cat({ops::cast(floats({3, 3}), DType::BFloat16), ops::cast(floats({1, 3}), DType::BFloat16)}, 0, one,
            "bf16, 2-byte words");
  check_cat({ops::binary(BinaryOp::Gt, floats({5}), gpu(zeros({5}))),
             ops::binary(BinaryOp::Gt, floats({3}), gpu(zeros({3})))},
            0, one, "bool, 1-byte words");
  check_cat({ops::cast(floats({4}), DType::Int64), ops::cast(floats({9}), DType::Int64)}, 0, one, "int64");
  // more inputs than one launch carries (8), empty ones among them, and packs that start
  // at output addresses 4 bytes past a 16-byte boundary (1 + i rows of 3 floats: 12-byte
  // rows, so the running offset is a multiple of 4 bytes but seldom of 16)
  std::vector<Tensor> many;
  for (int i = 0; i < 19; ++i) many.push_back(floats({i % 5 == 0 ? 0 : 1 + i, 3}));
  check_cat(many, 0, one, "19 inputs, three packs, empty inputs, shifted pack starts");
  // a contiguous view that starts one float into its storage (made on the GPU): 4-byte words
  check_cat({ops::narrow(floats({65}), 0, 1, 64), floats({64})}, 0, one, "a view one element in");
  // along dim 1 after a size-1 dim: still end to end
  check_cat({floats({1, 3, 4}), floats({1, 5, 4})}, 1, one, "dim 1 after a size-1 dim");
  // not end to end: along dim 1 with 2 rows, and a transposed (non-contiguous) input
  check_cat({floats({2, 3}), floats({2, 5})}, 1, Path::Slices, "dim 1 with 2 rows: slice copies");
  check_cat({ops::transpose(floats({4, 3}), 0, 1), floats({2, 4})}, 0, Path::Slices,
            "a transposed input: slice copies");
}

TEST_CASE("cuda: copy with dtype conversion and strides, fill, arange") {
  SKIP_WITHOUT_GPU();
  // |x| * 40 stays inside uint8's range: float -> uint8 of a negative value is undefined
  // behaviour in C++ and differs between CPU (wraps) and GPU (saturates).
  Tensor x = ops::mul_scalar(ops::abs(random_normal({5, 6, 7}, 2)), 40.0);
  Tensor xt = ops::transpose(x, 0, 2);  // non-contiguous
  for (DType dtype : {DType::Float32, DType::Float64, DType::BFloat16, DType::Float16, DType::Int64,
                      DType::Int32, DType::UInt8, DType::Bool}) {
    INFO("to dtype " << dtype_name(dtype));
    Tensor ref = ops::cast(xt, dtype);
    Tensor got = ops::cast(gpu(x).contiguous(), dtype);  // contiguous source
    Tensor got_strided = ops::cast(ops::transpose(gpu(x), 0, 2), dtype);
    CHECK(relative_error(ops::cast(got_strided, DType::Float64), ops::cast(ref, DType::Float64)) == 0.0);
    CHECK(relative_error(ops::cast(ops::transpose(got, 0, 2), DType::Float64),
                         ops::cast(ref, DType::Float64)) == 0.0);
    // and back to float32 from that dtype
    CHECK(relative_error(ops::cast(gpu(ref), DType::Float32), ops::cast(ref, DType::Float32)) == 0.0);
  }
  // strided destination: copy into a transposed view
  Tensor dst_cpu = zeros({7, 6, 5});
  Tensor dst_gpu = zeros({7, 6, 5}, DType::Float32, kGpu);
  Tensor view_cpu = ops::transpose(dst_cpu, 0, 2);
  Tensor view_gpu = ops::transpose(dst_gpu, 0, 2);
  ops::copy_(view_cpu, x);
  ops::copy_(view_gpu, gpu(x));
  CHECK(relative_error(dst_gpu, dst_cpu) == 0.0);

  for (DType dtype : {DType::Float32, DType::Int64, DType::BFloat16, DType::Bool}) {
    INFO("full " << dtype_name(dtype));
    CHECK(relative_error(ops::cast(full({9, 3}, 2.5, dtype, kGpu), DType::Float64),
                         ops::cast(full({9, 3}, 2.5, dtype), DType::Float64)) == 0.0);
  }
  for (DType dtype : {DType::Float32, DType::Int64}) {
    INFO("arange " << dtype_name(dtype));
    CHECK(relative_error(ops::cast(arange(-3, 14, 1.5, dtype, kGpu), DType::Float64),
                         ops::cast(arange(-3, 14, 1.5, dtype), DType::Float64)) == 0.0);
  }
}

TEST_CASE("cuda: contiguous float32 <-> bfloat16 casts, vector path, tail and misaligned views") {
  SKIP_WITHOUT_GPU();
  // cuda/copy.cu converts 4 elements per thread when both pointers are aligned to 4
  // elements (a scalar tail for n % 4), one per thread otherwise. Bit-exact with the CPU:
  // both round to nearest even. Views from element 1 are misaligned (scalar kernel); from
  // element 4 they are aligned again (vector path at an offset).
  const std::vector<float> special = {1.00390625f, -1.00390625f,  // halfway: round to even (down)
                                      1.01171875f, -1.01171875f,  // halfway: round to even (up)
                                      -0.0f, 1e-40f, -3e-39f,     // signed zero, subnormals
                                      3.4028235e38f, -3.4e38f,    // round to +-infinity in bf16
                                      std::numeric_limits<float>::infinity(), 65504.0f, 0.1f};
  uint64_t seed = 3000;
  for (int64_t n : {1, 3, 4, 5, 4099}) {
    std::vector<float> values = random_normal({n}, ++seed).to_vector<float>();
    for (size_t i = 0; i < values.size(); ++i) {
      values[i] *= 3.0f;
      if (n >= 16) {  // special values at the start (vector body) and in the last 3 (tail)
        if (i < special.size()) values[i] = special[i];
        if (i + 3 >= values.size()) values[i] = special[(i + 5) % special.size()];
      }
    }
    const Tensor x = from_vector<float>(values, {n});
    const Tensor x_gpu = gpu(x);
    const Tensor xb = ops::cast(x, DType::BFloat16);
    const Tensor xb_gpu = gpu(xb);
    for (int64_t start : {0, 1, 4}) {
      if (start >= n) continue;
      INFO("n " << n << " from element " << start);
      const int64_t length = n - start;
      CHECK(relative_error(ops::cast(ops::cast(ops::narrow(x_gpu, 0, start, length), DType::BFloat16), DType::Float64),
                           ops::cast(ops::cast(ops::narrow(x, 0, start, length), DType::BFloat16), DType::Float64)) ==
            0.0);
      CHECK(relative_error(ops::cast(ops::narrow(xb_gpu, 0, start, length), DType::Float32),
                           ops::cast(ops::narrow(xb, 0, start, length), DType::Float32)) == 0.0);
      // a misaligned destination too: write into a slice of a larger tensor
      Tensor dst_cpu = zeros({n}, DType::BFloat16), dst_gpu = zeros({n}, DType::BFloat16, kGpu);
      Tensor slice_cpu = ops::narrow(dst_cpu, 0, start, length), slice_gpu = ops::narrow(dst_gpu, 0, start, length);
      ops::copy_(slice_cpu, ops::narrow(x, 0, 0, length));
      ops::copy_(slice_gpu, ops::narrow(x_gpu, 0, 0, length));
      CHECK(relative_error(ops::cast(dst_gpu, DType::Float64), ops::cast(dst_cpu, DType::Float64)) == 0.0);
    }
  }
}

TEST_CASE("cuda: transposing copies [B, L, H, D] <-> [B, H, L, D], with and without conversion") {
  SKIP_WITHOUT_GPU();
  // D = 64: innermost run contiguous on both sides, strides multiples of 4 -> 4 elements
  // per thread (cuda/copy.cu). D = 6 and D = 3: the scalar kernel. Exact in float32 and
  // float32 -> bfloat16 (round to nearest even on both sides).
  const int64_t B = 2, L = 7, H = 3;
  uint64_t seed = 3100;
  auto exact = [](const Tensor& got, const Tensor& ref) {
    return relative_error(ops::cast(got, DType::Float64), ops::cast(ref, DType::Float64)) == 0.0;
  };
  for (int64_t D : {64, 6, 3}) {
    INFO("D " << D);
    const Tensor x = random_normal({B, L, H, D}, ++seed);
    const Tensor x_gpu = gpu(x);
    const Tensor ref = ops::transpose(x, 1, 2).contiguous();  // [B, H, L, D]
    const Tensor got = ops::transpose(x_gpu, 1, 2).contiguous();
    CHECK(exact(got, ref));
    CHECK(exact(ops::cast(ops::transpose(x_gpu, 1, 2), DType::BFloat16),
                ops::cast(ops::transpose(x, 1, 2), DType::BFloat16)));
    // and back: [B, H, L, D] into a [B, L, H, D] tensor through its transposed view
    // (a strided destination), float32 -> bfloat16 and float32 -> float32
    for (DType dtype : {DType::BFloat16, DType::Float32}) {
      INFO("back to " << dtype_name(dtype));
      Tensor back_cpu = zeros({B, L, H, D}, dtype), back_gpu = zeros({B, L, H, D}, dtype, kGpu);
      Tensor view_cpu = ops::transpose(back_cpu, 1, 2), view_gpu = ops::transpose(back_gpu, 1, 2);
      ops::copy_(view_cpu, ref);
      ops::copy_(view_gpu, got);
      CHECK(exact(back_gpu, back_cpu));
      CHECK(exact(back_cpu, ops::cast(x, dtype)));
    }
  }
  // D = 64 read from a wider tensor's slice: from element 4 of each run of 68 the vector
  // path still applies (aligned, strides multiples of 4); from element 1 it is misaligned
  // and from a run of 65 the strides are not multiples of 4 (scalar kernel both).
  for (auto [width, start] : {std::pair<int64_t, int64_t>{68, 4}, {68, 1}, {65, 1}}) {
    INFO("D 64 from element " << start << " of " << width);
    const Tensor wide = random_normal({B, L, H, width}, ++seed);
    const Tensor x = ops::narrow(wide, 3, start, 64);
    const Tensor x_gpu = ops::narrow(gpu(wide), 3, start, 64);
    CHECK(exact(ops::transpose(x_gpu, 1, 2).contiguous(), ops::transpose(x, 1, 2).contiguous()));
    CHECK(exact(ops::cast(ops::transpose(x_gpu, 1, 2), DType::BFloat16),
                ops::cast(ops::transpose(x, 1, 2), DType::BFloat16)));
  }
  // a broadcast source (stride 0 over rows, as a bias expanded to [rows, 64]) takes the
  // vector path too
  const Tensor bias = random_normal({64}, ++seed);
  for (DType dtype : {DType::Float32, DType::BFloat16}) {
    INFO("broadcast into " << dtype_name(dtype));
    Tensor rows_cpu = zeros({9, 64}, dtype), rows_gpu = zeros({9, 64}, dtype, kGpu);
    ops::copy_(rows_cpu, bias);
    ops::copy_(rows_gpu, gpu(bias));
    CHECK(exact(rows_gpu, rows_cpu));
  }
}

TEST_CASE("cuda: Philox random streams match the CPU") {
  SKIP_WITHOUT_GPU();
  for (uint64_t offset : {0ull, 1ull, 3ull, 4ull, 1001ull}) {
    for (int64_t n : {1, 5, 1023}) {
      INFO("offset " << offset << " n " << n);
      // uniform: bit-exact (24-bit uniforms, affine map in double on both sides)
      CHECK(relative_error(rand({n}, 1234, offset, DType::Float32, kGpu), rand({n}, 1234, offset)) == 0.0);
      CHECK(relative_error(uniform({n}, -2.0, 3.0, 99, offset, DType::Float64, kGpu),
                           uniform({n}, -2.0, 3.0, 99, offset, DType::Float64)) == 0.0);
      // normal: double math on both sides, float32 results within an ulp
      CHECK(relative_error(randn({n}, 77, offset, DType::Float32, kGpu), randn({n}, 77, offset)) <= 1e-6);
      CHECK(relative_error(normal({n}, 1.0, 2.0, 5, offset, DType::Float64, kGpu),
                           normal({n}, 1.0, 2.0, 5, offset, DType::Float64)) <= 1e-12);
    }
  }
}

TEST_CASE("cuda: unary ops and their backward, contiguous and strided") {
  SKIP_WITHOUT_GPU();
  const std::vector<UnaryOp> all = {
      UnaryOp::Neg, UnaryOp::Exp, UnaryOp::Log, UnaryOp::Log1p, UnaryOp::Sqrt, UnaryOp::Rsqrt,
      UnaryOp::Abs, UnaryOp::Sign, UnaryOp::Reciprocal, UnaryOp::Square, UnaryOp::Tanh,
      UnaryOp::Sigmoid, UnaryOp::Relu, UnaryOp::GeluErf, UnaryOp::GeluTanh, UnaryOp::QuickGelu,
      UnaryOp::AddScalar, UnaryOp::MulScalar, UnaryOp::PowScalar, UnaryOp::RSubScalar,
      UnaryOp::RDivScalar, UnaryOp::Clamp};
  uint64_t seed = 10;
  for (UnaryOp op : all) {
    const bool needs_positive = op == UnaryOp::Log || op == UnaryOp::Sqrt || op == UnaryOp::Rsqrt ||
                                op == UnaryOp::PowScalar || op == UnaryOp::Reciprocal ||
                                op == UnaryOp::RDivScalar || op == UnaryOp::Log1p;
    const double alpha = op == UnaryOp::Clamp ? -0.5 : (op == UnaryOp::PowScalar ? 1.7 : 0.75);
    const double beta = op == UnaryOp::Clamp ? 0.8 : 0.0;
    for (const Shape& shape : kShapes) {
      INFO(unary_op_name(op) << " on " << shape_str(shape));
      Tensor x = needs_positive ? random_positive(shape, ++seed) : random_normal(shape, ++seed);
      Tensor g = random_normal(shape, ++seed);
      CHECK_CLOSE(ops::unary(op, gpu(x), alpha, beta), ops::unary(op, x, alpha, beta), "forward");
      CHECK_CLOSE(ops::unary_backward(op, gpu(g), gpu(x), alpha, beta),
                  ops::unary_backward(op, g, x, alpha, beta), "backward");
    }
    // non-contiguous input: a transposed view
    Tensor x = needs_positive ? random_positive({6, 9}, ++seed) : random_normal({6, 9}, ++seed);
    Tensor g = random_normal({9, 6}, ++seed);
    CHECK_CLOSE(ops::unary(op, ops::transpose(gpu(x), 0, 1), alpha, beta),
                ops::unary(op, ops::transpose(x, 0, 1), alpha, beta), "strided forward");
    CHECK_CLOSE(ops::unary_backward(op, gpu(g), ops::transpose(gpu(x), 0, 1), alpha, beta),
                ops::unary_backward(op, g, ops::transpose(x, 0, 1), alpha, beta), "strided backward");
  }
  // quick_gelu's backward (the MLP's, every training step) on each path of
  // cuda::unary_backward_f32: float4 with a scalar tail (all three contiguous and 16-byte
  // aligned, n % 4 != 0), views from element 1 (misaligned: generic kernel), views from
  // element 4 (aligned again: float4), one misaligned operand, and a strided input.
  for (int64_t n : {1, 3, 4, 4099}) {
    INFO("quick_gelu backward, n " << n);
    const Tensor x = random_normal({n + 4}, ++seed), g = random_normal({n + 4}, ++seed);
    const Tensor xg = gpu(x), gg = gpu(g);
    for (int64_t start : {0, 1, 4}) {
      INFO("from element " << start);
      CHECK_CLOSE(ops::unary_backward(UnaryOp::QuickGelu, ops::narrow(gg, 0, start, n), ops::narrow(xg, 0, start, n)),
                  ops::unary_backward(UnaryOp::QuickGelu, ops::narrow(g, 0, start, n), ops::narrow(x, 0, start, n)),
                  "backward");
    }
    CHECK_CLOSE(ops::unary_backward(UnaryOp::QuickGelu, ops::narrow(gg, 0, 0, n), ops::narrow(xg, 0, 1, n)),
                ops::unary_backward(UnaryOp::QuickGelu, ops::narrow(g, 0, 0, n), ops::narrow(x, 0, 1, n)),
                "x misaligned");
  }
  const Tensor x = random_normal({77, 131}, ++seed), g = random_normal({131, 77}, ++seed);
  CHECK_CLOSE(ops::unary_backward(UnaryOp::QuickGelu, gpu(g), ops::transpose(gpu(x), 0, 1)),
              ops::unary_backward(UnaryOp::QuickGelu, g, ops::transpose(x, 0, 1)), "quick_gelu strided backward");
}

TEST_CASE("cuda: binary ops with broadcasting, comparisons and where") {
  SKIP_WITHOUT_GPU();
  const std::vector<BinaryOp> all = {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div,
                                     BinaryOp::Pow, BinaryOp::Maximum, BinaryOp::Minimum,
                                     BinaryOp::Eq, BinaryOp::Ne, BinaryOp::Lt, BinaryOp::Le,
                                     BinaryOp::Gt, BinaryOp::Ge};
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{7}, {7}}, {{1001}, {1001}}, {{4, 5, 6}, {5, 1}}, {{3, 1, 7}, {1, 4, 1}}, {{8}, {}}};
  uint64_t seed = 100;
  for (BinaryOp op : all) {
    for (const auto& [sa, sb] : shapes) {
      INFO(binary_op_name(op) << " " << shape_str(sa) << " with " << shape_str(sb));
      Tensor a = op == BinaryOp::Pow ? random_positive(sa, ++seed) : random_normal(sa, ++seed);
      Tensor b = random_normal(sb, ++seed);
      if (op >= BinaryOp::Eq) b = ops::binary(BinaryOp::Maximum, b, ops::neg(b));  // some ties below
      CHECK_CLOSE(ops::cast(ops::binary(op, gpu(a), gpu(b)), DType::Float32),
                  ops::cast(ops::binary(op, a, b), DType::Float32), "forward");
      // ties for comparisons: a against itself
      if (op >= BinaryOp::Eq)
        CHECK_CLOSE(ops::cast(ops::binary(op, gpu(a), gpu(a)), DType::Float32),
                    ops::cast(ops::binary(op, a, a), DType::Float32), "ties");
    }
    // non-contiguous operands
    Tensor a = op == BinaryOp::Pow ? random_positive({5, 8}, ++seed) : random_normal({5, 8}, ++seed);
    Tensor b = random_normal({8, 5}, ++seed);
    CHECK_CLOSE(ops::cast(ops::binary(op, ops::transpose(gpu(a), 0, 1), gpu(b)), DType::Float32),
                ops::cast(ops::binary(op, ops::transpose(a, 0, 1), b), DType::Float32), "strided");
  }
  // integer arithmetic
  Tensor ia = ops::cast(ops::mul_scalar(random_normal({33}, 7), 50.0), DType::Int64);
  Tensor ib = ops::cast(ops::mul_scalar(random_normal({33}, 8), 50.0), DType::Int64);
  for (BinaryOp op : {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Maximum, BinaryOp::Lt}) {
    INFO("int64 " << binary_op_name(op));
    CHECK(relative_error(ops::cast(ops::binary(op, gpu(ia), gpu(ib)), DType::Float64),
                         ops::cast(ops::binary(op, ia, ib), DType::Float64)) == 0.0);
  }
  // where with a broadcast condition, float and int64 payloads
  Tensor cond = ops::binary(BinaryOp::Gt, random_normal({4, 1, 6}, 9), full({}, 0.0));
  Tensor a = random_normal({4, 3, 6}, 10), b = random_normal({3, 6}, 11);
  CHECK_CLOSE(ops::where(gpu(cond), gpu(a), gpu(b)), ops::where(cond, a, b), "where");
  Tensor ia3 = ops::cast(ops::mul_scalar(a, 100.0), DType::Int64);
  Tensor ib3 = ops::cast(ops::mul_scalar(b, 100.0), DType::Int64);
  CHECK(relative_error(ops::cast(ops::where(gpu(cond), gpu(ia3), gpu(ib3)), DType::Float64),
                       ops::cast(ops::where(cond, ia3, ib3), DType::Float64)) == 0.0);
}

TEST_CASE("cuda: reductions (sum, max, min, argmax, logsumexp, mean) over dims") {
  SKIP_WITHOUT_GPU();
  const std::vector<std::pair<Shape, std::vector<int64_t>>> cases = {
      {{7}, {}}, {{3, 5}, {1}}, {{3, 5}, {0}}, {{4, 33, 7}, {1}}, {{2, 3, 129}, {-1}},
      {{2, 3, 129}, {0, 2}}, {{5000}, {}}, {{2, 9000}, {1}}, {{100000}, {}}};
  uint64_t seed = 300;
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::LogSumExp}) {
    for (const auto& [shape, dims] : cases) {
      INFO(reduce_op_name(op) << " of " << shape_str(shape) << " over " << dims.size() << " dims");
      Tensor x = random_normal(shape, ++seed);
      CHECK_CLOSE(ops::reduce(op, gpu(x), dims, false), ops::reduce(op, x, dims, false), "reduce");
      CHECK_CLOSE(ops::reduce(op, gpu(x), dims, true), ops::reduce(op, x, dims, true), "keepdim");
    }
  }
  for (const auto& [shape, dims] : cases) {
    if (dims.size() != 1) continue;
    Tensor x = random_normal(shape, ++seed);
    INFO("argmax/mean of " << shape_str(shape));
    CHECK(ops::argmax(gpu(x), dims[0]).to(Device::cpu()).to_vector<int64_t>() ==
          ops::argmax(x, dims[0]).to_vector<int64_t>());
    CHECK_CLOSE(ops::mean(gpu(x), dims), ops::mean(x, dims), "mean");
  }
  // first maximum wins on ties
  Tensor ties = from_vector<float>({1, 3, 3, 0, 2, 2}, {2, 3});
  CHECK(ops::argmax(gpu(ties), 1).to(Device::cpu()).to_vector<int64_t>() == std::vector<int64_t>{1, 1});
  // non-contiguous input (dispatch makes it contiguous or permutes)
  Tensor x = random_normal({6, 10}, ++seed);
  CHECK_CLOSE(ops::sum(ops::transpose(gpu(x), 0, 1), {1}), ops::sum(ops::transpose(x, 0, 1), {1}), "strided sum");
}

TEST_CASE("cuda: softmax and log_softmax forward and backward") {
  SKIP_WITHOUT_GPU();
  uint64_t seed = 500;
  for (const Shape& shape : std::vector<Shape>{{1, 1}, {3, 5}, {96, 50}, {4, 33, 77}, {2, 5000}, {3, 10001}}) {
    for (bool log : {false, true}) {
      for (int64_t dim : {int64_t(-1), int64_t(0)}) {
        INFO((log ? "log_softmax " : "softmax ") << shape_str(shape) << " dim " << dim);
        Tensor x = ops::mul_scalar(random_normal(shape, ++seed), 3.0);
        Tensor g = random_normal(shape, ++seed);
        Tensor y_ref = log ? ops::log_softmax(x, dim) : ops::softmax(x, dim);
        Tensor y_gpu = log ? ops::log_softmax(gpu(x), dim) : ops::softmax(gpu(x), dim);
        CHECK_CLOSE(y_gpu, y_ref, "forward");
        CHECK_CLOSE(ops::softmax_backward(gpu(g), y_gpu, dim, log), ops::softmax_backward(g, y_ref, dim, log),
                    "backward");
      }
    }
  }
}

TEST_CASE("cuda: attention's masked softmax (probabilities float32 and bf16, log-sum-exp) matches the CPU") {
  SKIP_WITHOUT_GPU();
  uint64_t seed = 600;
  // [B, H, Lq, Lk]: odd sizes, CLIP's 77 text tokens, rows longer than a warp's stride,
  // and Lq != Lk under the causal mask
  for (const Shape& shape : std::vector<Shape>{{2, 3, 5, 7}, {3, 8, 77, 77}, {2, 2, 4, 300}, {2, 1, 6, 3}}) {
    const int64_t batch = shape[0], lk = shape[3];
    std::vector<uint8_t> keep_values(static_cast<size_t>(batch * lk), 1);
    for (int64_t j = 0; j < lk; ++j) keep_values[j] = j == 0 ? 0 : 1;       // batch 0: first key padded
    for (int64_t j = lk / 2; j < lk; ++j) keep_values[lk + j] = 0;          // batch 1: the second half
    const Tensor keep = from_vector<uint8_t>(keep_values, {batch, lk});
    for (bool causal : {false, true}) {
      for (bool masked : {false, true}) {
        INFO(shape_str(shape) << " causal " << causal << " key mask " << masked);
        const Tensor scores = ops::mul_scalar(random_normal(shape, ++seed), 3.0);
        const Shape lse_shape{shape[0], shape[1], shape[2]};
        Tensor probs = empty(shape, DType::Float32), lse = empty(lse_shape, DType::Float32);
        cpu_backend().attention_softmax(scores, masked ? keep : Tensor(), causal, probs, lse);
        Tensor probs_gpu = empty(shape, DType::Float32, kGpu), lse_gpu = empty(lse_shape, DType::Float32, kGpu);
        Tensor probs_bf16 = empty(shape, DType::BFloat16, kGpu), no_lse;
        cuda_backend().attention_softmax(gpu(scores), masked ? gpu(keep) : Tensor(), causal, probs_gpu, lse_gpu);
        CHECK_CLOSE(probs_gpu, probs, "probabilities");
        CHECK_CLOSE(lse_gpu, lse, "log-sum-exp (-inf rows included)");
        // hidden keys are exactly 0 on both sides
        const std::vector<double> got = probs_gpu.to(Device::cpu()).to_vector<double>();
        const std::vector<double> want = probs.to_vector<double>();
        for (size_t i = 0; i < got.size(); ++i)
          if (want[i] == 0.0) CHECK(got[i] == 0.0);
        // bf16 probabilities: the float32 ones rounded, bit for bit
        cuda_backend().attention_softmax(gpu(scores), masked ? gpu(keep) : Tensor(), causal, probs_bf16, no_lse);
        CHECK(probs_bf16.to(Device::cpu()).to(DType::Float32).to_vector<float>() ==
              probs_gpu.to(Device::cpu()).to(DType::BFloat16).to(DType::Float32).to_vector<float>());
        if (masked) {  // an int64 mask means the same as the byte mask
          Tensor probs_i64 = empty(shape, DType::Float32, kGpu);
          cuda_backend().attention_softmax(gpu(scores), gpu(keep.to(DType::Int64)), causal, probs_i64, no_lse);
          CHECK(probs_i64.to(Device::cpu()).to_vector<float>() == probs_gpu.to(Device::cpu()).to_vector<float>());
        }
      }
    }
  }
}

TEST_CASE("cuda: layer_norm forward and backward, with and without affine") {
  SKIP_WITHOUT_GPU();
  uint64_t seed = 700;
  for (const Shape& shape : std::vector<Shape>{{1, 8}, {7, 33}, {400, 768}, {3, 5, 129}, {2, 2000}}) {
    for (bool affine : {true, false}) {
      INFO("layer_norm " << shape_str(shape) << (affine ? " affine" : " plain"));
      const int64_t width = shape.back();
      Tensor x = ops::add_scalar(ops::mul_scalar(random_normal(shape, ++seed), 2.0), 0.3);
      Tensor w = affine ? random_normal({width}, ++seed) : Tensor();
      Tensor b = affine ? random_normal({width}, ++seed) : Tensor();
      Tensor g = random_normal(shape, ++seed);
      auto ref = ops::layer_norm(x, w, b, 1e-5);
      auto got = ops::layer_norm(gpu(x), affine ? gpu(w) : w, affine ? gpu(b) : b, 1e-5);
      CHECK_CLOSE(got.y, ref.y, "y");
      CHECK_CLOSE(got.mean, ref.mean, "mean");
      CHECK_CLOSE(got.rstd, ref.rstd, "rstd");
      auto ref_grads = ops::layer_norm_backward(g, x, w, ref.mean, ref.rstd, affine);
      auto got_grads = ops::layer_norm_backward(gpu(g), gpu(x), affine ? gpu(w) : w, got.mean, got.rstd, affine);
      CHECK_CLOSE(got_grads.grad_x, ref_grads.grad_x, "grad_x");
      if (affine) {
        CHECK_CLOSE(got_grads.grad_weight, ref_grads.grad_weight, "grad_weight");
        CHECK_CLOSE(got_grads.grad_bias, ref_grads.grad_bias, "grad_bias");
      }
      // the residual stream's gradient folded into grad_x (autograd's FoldedGrads)
      Tensor addend = random_normal(shape, ++seed);
      auto ref_folded = ops::layer_norm_backward(g, x, w, ref.mean, ref.rstd, false, addend);
      auto got_folded = ops::layer_norm_backward(gpu(g), gpu(x), affine ? gpu(w) : w, got.mean, got.rstd, false,
                                                 gpu(addend));
      REQUIRE(got_folded.addend_folded);
      CHECK_CLOSE(got_folded.grad_x, ref_folded.grad_x, "grad_x with the addend folded in");
    }
  }
}

TEST_CASE("cuda: matmul, linear and batched GEMM with transposes and broadcast") {
  SKIP_WITHOUT_GPU();
  uint64_t seed = 900;
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{1, 1}, {1, 1}}, {{3, 5}, {5, 7}}, {{400, 768}, {768, 96}}, {{2, 3, 17, 9}, {2, 3, 9, 13}},
      {{4, 6, 5}, {5, 3}}, {{5}, {5, 2}}, {{7, 5}, {5}}, {{1, 33, 65}, {3, 65, 31}}};
  for (const auto& [sa, sb] : cases) {
    INFO("matmul " << shape_str(sa) << " @ " << shape_str(sb));
    Tensor a = random_normal(sa, ++seed), b = random_normal(sb, ++seed);
    CHECK_CLOSE(ops::matmul(gpu(a), gpu(b)), ops::matmul(a, b), "matmul");
  }
  // transposed operands (views) go through the GEMM's transpose flags or a copy
  Tensor a = random_normal({9, 6}, ++seed), b = random_normal({11, 9}, ++seed);
  CHECK_CLOSE(ops::matmul(ops::transpose(gpu(a), 0, 1), ops::transpose(gpu(b), 0, 1)),
              ops::matmul(ops::transpose(a, 0, 1), ops::transpose(b, 0, 1)), "transposed views");
  Tensor x = random_normal({2, 50, 768}, ++seed), w = random_normal({96, 768}, ++seed), bias = random_normal({96}, ++seed);
  CHECK_CLOSE(ops::linear(gpu(x), gpu(w), gpu(bias)), ops::linear(x, w, bias), "linear");
  // the backend directly: alpha/beta and every transpose combination
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      INFO("bmm trans_a " << ta << " trans_b " << tb);
      const int64_t B = 3, M = 13, N = 7, K = 21;
      Tensor A = random_normal(ta ? Shape{B, K, M} : Shape{B, M, K}, ++seed);
      Tensor Bm = random_normal(tb ? Shape{1, N, K} : Shape{1, K, N}, ++seed);  // broadcast batch
      Tensor C = random_normal({B, M, N}, ++seed);
      Tensor C_gpu = gpu(C).clone();
      cpu_backend().bmm(A, Bm, C, ta, tb, 0.5, 2.0);
      cuda_backend().bmm(gpu(A), gpu(Bm), C_gpu, ta, tb, 0.5, 2.0);
      CHECK_CLOSE(C_gpu, C, "bmm");
    }
  }
}

TEST_CASE("cuda: index_select / index_add / gather / scatter_add") {
  SKIP_WITHOUT_GPU();
  uint64_t seed = 1100;
  Tensor table = random_normal({37, 19}, ++seed);
  Tensor index = from_vector<int64_t>({0, 36, 5, 5, 12, 0, 7}, {7});
  CHECK_CLOSE(ops::index_select(gpu(table), 0, gpu(index)), ops::index_select(table, 0, index), "index_select rows");
  CHECK_CLOSE(ops::index_select(gpu(table), 1, gpu(from_vector<int64_t>({18, 0, 3}, {3}))),
              ops::index_select(table, 1, from_vector<int64_t>({18, 0, 3}, {3})), "index_select columns");
  Tensor grad = random_normal({7, 19}, ++seed);
  CHECK_CLOSE(ops::index_add({37, 19}, 0, gpu(index), gpu(grad)), ops::index_add({37, 19}, 0, index, grad),
              "index_add with repeated indices");
  // int64 table (e.g. labels) through index_select
  Tensor labels = ops::cast(ops::mul_scalar(table, 100.0), DType::Int64);
  CHECK(relative_error(ops::cast(ops::index_select(gpu(labels), 0, gpu(index)), DType::Float64),
                       ops::cast(ops::index_select(labels, 0, index), DType::Float64)) == 0.0);

  Tensor x = random_normal({6, 11}, ++seed);
  Tensor gidx = ops::cast(ops::mul_scalar(rand({6, 4}, ++seed), 10.99), DType::Int64);
  CHECK_CLOSE(ops::gather(gpu(x), 1, gpu(gidx)), ops::gather(x, 1, gidx), "gather last");
  CHECK_CLOSE(ops::gather(gpu(ops::transpose(x, 0, 1)), 0, gpu(ops::transpose(gidx, 0, 1))),
              ops::gather(ops::transpose(x, 0, 1), 0, ops::transpose(gidx, 0, 1)), "gather dim 0");
  Tensor g = random_normal({6, 4}, ++seed);
  CHECK_CLOSE(ops::scatter_add({6, 11}, 1, gpu(gidx), gpu(g)), ops::scatter_add({6, 11}, 1, gidx, g), "scatter_add");
}

TEST_CASE("cuda: attention forward and backward with causal and key-padding masks") {
  SKIP_WITHOUT_GPU();
  uint64_t seed = 1300;
  struct Case { int64_t B, H, Lq, Lk, D; bool causal; bool padding; };
  const std::vector<Case> cases = {
      {2, 3, 50, 50, 64, false, false},   // ViT-B/32 head
      {2, 2, 77, 77, 64, true, true},     // text tower: causal + padding
      {1, 2, 5, 9, 16, false, true},      // Lq != Lk, small D
      {1, 1, 70, 70, 100, true, false},   // D in (64, 128]
      {2, 1, 3, 130, 32, false, true},    // long keys, several tiles
      {1, 2, 4, 4, 160, false, false},    // D > 128: naive fallback
  };
  for (const Case& c : cases) {
    INFO("attention B" << c.B << " H" << c.H << " Lq" << c.Lq << " Lk" << c.Lk << " D" << c.D
                       << (c.causal ? " causal" : "") << (c.padding ? " padding" : ""));
    Tensor q = random_normal({c.B, c.H, c.Lq, c.D}, ++seed);
    Tensor k = random_normal({c.B, c.H, c.Lk, c.D}, ++seed);
    Tensor v = random_normal({c.B, c.H, c.Lk, c.D}, ++seed);
    Tensor g = random_normal({c.B, c.H, c.Lq, c.D}, ++seed);
    Tensor keep;
    if (c.padding) {
      std::vector<int64_t> mask(size_t(c.B * c.Lk), 1);
      for (int64_t j = c.Lk * 2 / 3; j < c.Lk; ++j) mask[size_t(j)] = 0;  // item 0: padded tail
      if (c.B > 1 && !c.causal)  // item 1: no key at all -> out 0, lse -inf
        for (int64_t j = 0; j < c.Lk; ++j) mask[size_t(c.Lk + j)] = 0;
      keep = ops::cast(from_vector<int64_t>(mask, {c.B, c.Lk}), DType::Bool);
    }
    const double scale = 1.0 / std::sqrt(double(c.D));
    auto ref = ops::attention(q, k, v, keep, c.causal, scale);
    auto got = ops::attention(gpu(q), gpu(k), gpu(v), keep.defined() ? gpu(keep) : keep, c.causal, scale);
    CHECK_CLOSE(got.out, ref.out, "out");
    CHECK_CLOSE(got.lse, ref.lse, "lse");
    auto ref_grads = ops::attention_backward(g, q, k, v, ref.out, ref.lse, keep, c.causal, scale);
    auto got_grads = ops::attention_backward(gpu(g), gpu(q), gpu(k), gpu(v), got.out, got.lse,
                                             keep.defined() ? gpu(keep) : keep, c.causal, scale);
    CHECK_CLOSE(got_grads.grad_q, ref_grads.grad_q, "grad_q");
    CHECK_CLOSE(got_grads.grad_k, ref_grads.grad_k, "grad_k");
    CHECK_CLOSE(got_grads.grad_v, ref_grads.grad_v, "grad_v");
    if (keep.defined()) {  // an int64 mask means the same
      Tensor keep64 = ops::cast(keep, DType::Int64);
      auto got64 = ops::attention(gpu(q), gpu(k), gpu(v), gpu(keep64), c.causal, scale);
      CHECK_CLOSE(got64.out, ref.out, "out with int64 mask");
    }
  }
}

#ifdef MMS_WITH_CUDA  // cuda:: entry points below
// cuDNN's fused attention (MMS_ATTENTION=cudnn) computes in bf16 with float32
// accumulation: compared with float32 attention of the same bf16-rounded inputs on the
// CPU at DESIGN.md's bf16 tolerance. Key masks are right padding (cuDNN takes lengths).
TEST_CASE("cuda: cuDNN's fused attention, forward and backward, against float32 attention of its bf16 inputs") {
  SKIP_WITHOUT_GPU();
  if (!cuda::cudnn_attention_built()) {
    MESSAGE("cuDNN attention skipped: this build has no cuDNN frontend");
    return;
  }
  constexpr double kBf16Tolerance = 2e-2;
  ops::AttentionPathGuard cudnn(ops::AttentionPath::Cudnn);
  uint64_t seed = 1400;
  struct Case { int64_t B, H, Lq, Lk, D; bool causal; std::vector<int64_t> lengths; };
  const std::vector<Case> cases = {
      {2, 12, 50, 50, 64, false, {}},            // ViT-B/32 heads
      {4, 8, 77, 77, 64, true, {77, 40, 1, 60}},  // text tower: causal + right padding
      {2, 2, 5, 9, 64, false, {9, 3}},             // Lq != Lk
  };
  auto rounded = [](const Tensor& t) { return t.to(DType::BFloat16); };
  auto widened = [](const Tensor& t) { return t.to(Device::cpu()).to(DType::Float32); };
  for (const Case& c : cases) {
    INFO("cuDNN attention B" << c.B << " H" << c.H << " Lq" << c.Lq << " Lk" << c.Lk << " D" << c.D
                             << (c.causal ? " causal" : "") << (c.lengths.empty() ? "" : " padding"));
    const Tensor q = rounded(random_normal({c.B, c.H, c.Lq, c.D}, ++seed));
    const Tensor k = rounded(random_normal({c.B, c.H, c.Lk, c.D}, ++seed));
    const Tensor v = rounded(random_normal({c.B, c.H, c.Lk, c.D}, ++seed));
    const Tensor g = rounded(random_normal({c.B, c.H, c.Lq, c.D}, ++seed));
    Tensor keep;
    if (!c.lengths.empty()) {
      std::vector<uint8_t> mask(size_t(c.B * c.Lk), 0);
      for (int64_t b = 0; b < c.B; ++b)
        for (int64_t j = 0; j < c.lengths[size_t(b)]; ++j) mask[size_t(b * c.Lk + j)] = 1;
      keep = from_vector<uint8_t>(mask, {c.B, c.Lk});
    }
    const double scale = 1.0 / std::sqrt(double(c.D));
    const auto ref = ops::attention(widened(q), widened(k), widened(v), keep, c.causal, scale);
    const auto ref_grads = ops::attention_backward(widened(g), widened(q), widened(k), widened(v), ref.out, ref.lse,
                                                   keep, c.causal, scale);
    const Tensor keep_gpu = keep.defined() ? gpu(keep) : keep;
    const auto got = ops::attention(gpu(q), gpu(k), gpu(v), keep_gpu, c.causal, scale);
    CHECK(got.out.dtype() == DType::BFloat16);
    CHECK_WITHIN(widened(got.out), ref.out, kBf16Tolerance, "out");
    CHECK_WITHIN(got.lse, ref.lse, 1e-3, "lse (float32 statistics)");
    const auto got_grads = ops::attention_backward(gpu(g), gpu(q), gpu(k), gpu(v), got.out, got.lse, keep_gpu,
                                                   c.causal, scale);
    CHECK_WITHIN(widened(got_grads.grad_q), ref_grads.grad_q, kBf16Tolerance, "grad_q");
    CHECK_WITHIN(widened(got_grads.grad_k), ref_grads.grad_k, kBf16Tolerance, "grad_k");
    CHECK_WITHIN(widened(got_grads.grad_v), ref_grads.grad_v, kBf16Tolerance, "grad_v");
  }
  // sizes cuDNN's SDPA refuses (head_dim 12; one query against one key, which its backward
  // refuses after a forward would have run) take the GEMM path, forward and backward
  for (const auto& [L, D] : std::vector<std::pair<int64_t, int64_t>>{{6, 12}, {1, 64}}) {
    INFO("cuDNN fallback L" << L << " D" << D);
    const Tensor q = rounded(random_normal({2, 2, L, D}, ++seed)), k = rounded(random_normal({2, 2, L, D}, ++seed));
    const Tensor v = rounded(random_normal({2, 2, L, D}, ++seed)), g = rounded(random_normal({2, 2, L, D}, ++seed));
    const double scale = 1.0 / std::sqrt(double(D));
    const auto ref = ops::attention(widened(q), widened(k), widened(v), Tensor(), false, scale);
    const auto ref_grads =
        ops::attention_backward(widened(g), widened(q), widened(k), widened(v), ref.out, ref.lse, Tensor(), false, scale);
    const auto got = ops::attention(gpu(q), gpu(k), gpu(v), Tensor(), false, scale);
    CHECK_WITHIN(widened(got.out), ref.out, kBf16Tolerance, "out");
    const auto got_grads =
        ops::attention_backward(gpu(g), gpu(q), gpu(k), gpu(v), got.out, got.lse, Tensor(), false, scale);
    if (L > 1) {
      CHECK_WITHIN(widened(got_grads.grad_q), ref_grads.grad_q, kBf16Tolerance, "grad_q");
      CHECK_WITHIN(widened(got_grads.grad_k), ref_grads.grad_k, kBf16Tolerance, "grad_k");
    } else {  // one key: the probabilities are constantly 1, so the scores' gradient,
              // and with it grad_q and grad_k, is exactly 0
      CHECK(ops::amax(ops::abs(widened(got_grads.grad_q))).item() == 0.0);
      CHECK(ops::amax(ops::abs(widened(got_grads.grad_k))).item() == 0.0);
    }
    CHECK_WITHIN(widened(got_grads.grad_v), ref_grads.grad_v, kBf16Tolerance, "grad_v");
  }
  if (cuda::debug_sync_enabled()) {  // a mask that is not right padding is refused, not misread
    const Tensor q = gpu(rounded(random_normal({1, 1, 4, 64}, ++seed)));
    const Tensor holes = gpu(from_vector<uint8_t>({1, 0, 1, 1}, {1, 4}));
    std::string message;
    try {
      ops::attention(q, q, q, holes, false, 0.125);
    } catch (const Error& e) {
      message = e.what();
    }
    CHECK(message.find("right padding") != std::string::npos);
  }
}
#endif

#ifdef MMS_WITH_CUDA  // cuda:: entry points below
// Our tensor-core tiles (MMS_ATTENTION=tiles) compute in bf16 with float32 accumulation
// and statistics: compared with float32 attention of the same bf16-rounded inputs on the
// CPU at DESIGN.md's bf16 tolerance. The inputs are head views of [B, L, H, D] memory,
// as the projections make them; the outputs must come back in that layout (no copy).
TEST_CASE("cuda: tensor-core attention tiles, forward and backward, against float32 attention of their bf16 inputs") {
  SKIP_WITHOUT_GPU();
  constexpr double kBf16Tolerance = 2e-2;
  ops::AttentionPathGuard tiles(ops::AttentionPath::Tiles);
  uint64_t seed = 1500;
  // keep: "" none, "tail" right padding, "holes" an arbitrary pattern (item 1 also hides
  // key 0, so under causal its query 0 sees nothing: out 0, lse -inf, zero gradients).
  struct Case { int64_t B, H, Lq, Lk, D; bool causal; std::string keep; };
  const std::vector<Case> cases = {
      {2, 12, 50, 50, 64, false, ""},       // ViT-B/32 heads
      {3, 8, 77, 77, 64, true, "holes"},    // text tower: causal + a key mask
      {2, 2, 5, 9, 32, false, "tail"},      // Lq != Lk, one tile each
      {2, 3, 9, 5, 16, true, "holes"},      // Lq > Lk under causal
      {1, 2, 128, 128, 64, true, ""},       // the longest the tiles take
      {2, 1, 33, 100, 128, false, "tail"},  // the widest head
  };
  auto widened = [](const Tensor& t) { return t.to(Device::cpu()).to(DType::Float32); };
  // A bf16 [B, H, L, D] head view of [B, L, H, D] memory, and its values on the CPU.
  auto head_view = [&](int64_t B, int64_t H, int64_t L, int64_t D) {
    const Tensor memory = gpu(random_normal({B, L, H, D}, ++seed).to(DType::BFloat16));
    return ops::transpose(memory, 1, 2);
  };
  REQUIRE(cuda::attention_tiles_supported(77, 77, 64));  // CLIP's text heads fit every sm_80+ card (108 KB)
  for (const Case& c : cases) {
    INFO("tiles B" << c.B << " H" << c.H << " Lq" << c.Lq << " Lk" << c.Lk << " D" << c.D
                   << (c.causal ? " causal" : "") << " keep '" << c.keep << "'");
    if (!cuda::attention_tiles_supported(c.Lq, c.Lk, c.D)) {  // L = 128, D = 64 needs 215 KB: H100/H200, not A100
      MESSAGE("tiles case skipped: this device's shared memory per block is too small for it");
      continue;
    }
    const Tensor q = head_view(c.B, c.H, c.Lq, c.D), k = head_view(c.B, c.H, c.Lk, c.D);
    const Tensor v = head_view(c.B, c.H, c.Lk, c.D);
    Tensor keep;
    if (!c.keep.empty()) {
      std::vector<uint8_t> mask(size_t(c.B * c.Lk), 1);
      for (int64_t b = 0; b < c.B; ++b)
        for (int64_t j = 0; j < c.Lk; ++j) {
          const bool hidden = c.keep == "tail" ? j >= c.Lk - 1 - b * (c.Lk / 3) : (j % 3 == 1 || (b == 1 && j == 0));
          mask[size_t(b * c.Lk + j)] = hidden ? 0 : 1;
        }
      keep = from_vector<uint8_t>(mask, {c.B, c.Lk});
    }
    const Tensor keep_gpu = keep.defined() ? gpu(keep) : keep;
    const double scale = 1.0 / std::sqrt(double(c.D));
    const auto ref = ops::attention(widened(q), widened(k), widened(v), keep, c.causal, scale);
    for (bool bf16_out : {false, true}) {
      INFO("output and gradients " << (bf16_out ? "bf16" : "float32"));
      const std::optional<DType> dtype = bf16_out ? std::optional(DType::BFloat16) : std::nullopt;
      const DType out_dtype = bf16_out ? DType::BFloat16 : DType::Float32;
      const Tensor g = ops::transpose(gpu(random_normal({c.B, c.Lq, c.H, c.D}, ++seed).to(out_dtype)), 1, 2);
      const auto got = ops::attention(q, k, v, keep_gpu, c.causal, scale, dtype);
      CHECK(got.out.dtype() == out_dtype);
      CHECK(got.out.stride(2) == c.H * c.D);  // [B, L, H, D] memory: the heads merge without a copy
      CHECK(ops::transpose(got.out, 1, 2).is_contiguous());
      CHECK_WITHIN(widened(got.out), ref.out, kBf16Tolerance, "out");
      {  // this file's relative_error: equal infinities match (the "holes" cases' key-less rows have lse -inf,
         // which CHECK_WITHIN's would count as an infinite error)
        const double lse_error = relative_error(got.lse, ref.lse);
        INFO("lse (float32 statistics, -inf rows included): relative error " << lse_error);
        CHECK(lse_error <= 1e-3);
      }
      const auto ref_grads = ops::attention_backward(widened(g), widened(q), widened(k), widened(v), ref.out,
                                                     ref.lse, keep, c.causal, scale);
      const auto grads = ops::attention_backward(g, q, k, v, got.out, got.lse, keep_gpu, c.causal, scale, dtype);
      for (const Tensor* t : {&grads.grad_q, &grads.grad_k, &grads.grad_v}) {
        CHECK(t->dtype() == out_dtype);
        CHECK(ops::transpose(*t, 1, 2).is_contiguous());
      }
      CHECK_WITHIN(widened(grads.grad_q), ref_grads.grad_q, kBf16Tolerance, "grad_q");
      CHECK_WITHIN(widened(grads.grad_k), ref_grads.grad_k, kBf16Tolerance, "grad_k");
      CHECK_WITHIN(widened(grads.grad_v), ref_grads.grad_v, kBf16Tolerance, "grad_v");
      // deterministic: every output tile has one owner, no atomics
      const auto again = ops::attention_backward(g, q, k, v, got.out, got.lse, keep_gpu, c.causal, scale, dtype);
      CHECK(relative_error(again.grad_k, grads.grad_k) == 0.0);
      CHECK(relative_error(again.grad_q, grads.grad_q) == 0.0);
    }
  }
  {  // Other layouts: q, k, v as offset views of one packed [B, L, 3, H, D] projection (token
     // stride 3HD, k and v starting mid-buffer) and as contiguous [B, H, L, D] tensors; and
     // every output element written: out and the gradients start as NaN.
    const int64_t B = 2, H = 4, L = 50, D = 64;
    INFO("tiles on packed views and contiguous tensors, outputs pre-filled with NaN");
    const Tensor packed = gpu(random_normal({B, L, 3, H, D}, ++seed).to(DType::BFloat16));
    auto part = [&](int64_t i) { return ops::transpose(ops::select(packed, 2, i), 1, 2); };
    const Tensor q = part(0), k = part(1), v = part(2);
    REQUIRE(k.offset() > 0);
    const Tensor g = gpu(random_normal({B, H, L, D}, ++seed).to(DType::BFloat16));
    std::vector<uint8_t> mask(size_t(B * L), 1);
    for (int64_t j = 0; j < L; j += 4) mask[size_t(L + j)] = 0;  // item 1 hides every fourth key
    const Tensor keep = from_vector<uint8_t>(mask, {B, L});
    const double scale = 0.125;
    const auto ref = ops::attention(widened(q), widened(k), widened(v), keep, true, scale);
    const auto ref_grads =
        ops::attention_backward(widened(g), widened(q), widened(k), widened(v), ref.out, ref.lse, keep, true, scale);
    auto nan_filled = [&] { return gpu(full({B, H, L, D}, std::nan(""), DType::BFloat16)); };
    Tensor out = nan_filled(), lse = gpu(full({B, H, L}, std::nan(""))), gq = nan_filled(), gk = nan_filled(),
           gv = nan_filled();
    cuda_backend().attention_tiles(q, k, v, gpu(keep), true, scale, out, lse);
    CHECK_WITHIN(widened(out), ref.out, kBf16Tolerance, "out (packed views)");
    cuda_backend().attention_tiles_backward(g, q, k, v, out, lse, gpu(keep), true, scale, gq, gk, gv);
    CHECK_WITHIN(widened(gq), ref_grads.grad_q, kBf16Tolerance, "grad_q (packed views)");
    CHECK_WITHIN(widened(gk), ref_grads.grad_k, kBf16Tolerance, "grad_k (packed views, hidden keys 0)");
    CHECK_WITHIN(widened(gv), ref_grads.grad_v, kBf16Tolerance, "grad_v (packed views, hidden keys 0)");
    // contiguous [B, H, L, D] operands through ops: the same values
    const auto contiguous = ops::attention(q.contiguous(), k.contiguous(), v.contiguous(), gpu(keep), true, scale,
                                           DType::BFloat16);
    CHECK(relative_error(contiguous.out, out) == 0.0);
    // q and the output gradient starting 2 bytes into their buffers: the kernel's one-element
    // loads instead of 16-byte words, the same values
    auto shifted = [&](const Tensor& t) {  // t's values as a head view of [B, L, H, D] memory at offset 1
      Tensor buffer = gpu(zeros({B * L * H * D + 1}, DType::BFloat16));
      Tensor memory = ops::reshape(ops::narrow(buffer, 0, 1, B * L * H * D), {B, L, H, D});
      ops::copy_(memory, ops::transpose(t, 1, 2));
      return ops::transpose(memory, 1, 2);
    };
    const Tensor q_shifted = shifted(q), g_shifted = shifted(g);
    REQUIRE(reinterpret_cast<uintptr_t>(q_shifted.raw_data()) % 16 != 0);
    const auto unaligned = ops::attention(q_shifted, k, v, gpu(keep), true, scale, DType::BFloat16);
    CHECK(relative_error(unaligned.out, out) == 0.0);
    const auto unaligned_grads = ops::attention_backward(g_shifted, q_shifted, k, v, unaligned.out, unaligned.lse,
                                                         gpu(keep), true, scale, DType::BFloat16);
    CHECK(relative_error(unaligned_grads.grad_q, gq) == 0.0);
    CHECK(relative_error(unaligned_grads.grad_k, gk) == 0.0);
  }
  // Sizes the tiles do not take go to the GEMM path (same function), and say so.
  CHECK_FALSE(cuda::attention_tiles_supported(129, 129, 64));
  CHECK_FALSE(cuda::attention_tiles_supported(50, 50, 72));
  const Tensor wide = head_view(1, 2, 129, 64);
  CHECK_FALSE(ops::attention_uses_tiles(wide, wide));
  CHECK(ops::attention_uses_gemm(wide, wide));
  const auto wide_ref = ops::attention(widened(wide), widened(wide), widened(wide), {}, true, 0.125);
  CHECK_WITHIN(widened(ops::attention(wide, wide, wide, {}, true, 0.125).out), wide_ref.out, kBf16Tolerance,
               "129 keys via the GEMM path");
}
#endif

TEST_CASE("cuda: ListMLE loss and gradient") {
  SKIP_WITHOUT_GPU();
  const int64_t lists = 5, width = 9;
  Tensor scores = ops::mul_scalar(random_normal({lists, width}, 1500), 4.0);
  std::vector<int64_t> order(size_t(lists * width));
  std::vector<int64_t> lengths = {9, 4, 1, 0, 7};
  for (int64_t b = 0; b < lists; ++b)
    for (int64_t k = 0; k < width; ++k) order[size_t(b * width + k)] = (k * 4 + b) % width;  // permutations
  Tensor order_t = from_vector<int64_t>(order, {lists, width});
  Tensor lengths_t = from_vector<int64_t>(lengths, {lists});
  Tensor loss_cpu = empty({lists}), grad_cpu = empty({lists, width});
  Tensor loss_gpu = empty({lists}, DType::Float32, kGpu), grad_gpu = empty({lists, width}, DType::Float32, kGpu);
  cpu_backend().listmle(scores, order_t, lengths_t, loss_cpu, grad_cpu);
  cuda_backend().listmle(gpu(scores), gpu(order_t), gpu(lengths_t), loss_gpu, grad_gpu);
  CHECK_CLOSE(loss_gpu, loss_cpu, "loss");
  CHECK_CLOSE(grad_gpu, grad_cpu, "grad");
  // A bad order (item 0 repeated): with the debug sync on it is rejected with the CPU's
  // message; without it the check would cost a host wait per step, so it is skipped,
  // but the kernel still reads nothing out of bounds.
  Tensor bad = from_vector<int64_t>(std::vector<int64_t>(size_t(lists * width), 0), {lists, width});
  if (debug_sync_enabled()) {
    CHECK_THROWS_AS(cuda_backend().listmle(gpu(scores), gpu(bad), gpu(lengths_t), loss_gpu, grad_gpu), Error);
  } else {
    cuda_backend().listmle(gpu(scores), gpu(bad), gpu(lengths_t), loss_gpu, grad_gpu);
    device_synchronize(kGpu);
    for (double value : loss_gpu.to(Device::cpu()).to_vector<double>()) CHECK(std::isfinite(value));
  }
}

TEST_CASE("cuda: fused AdamW and global sum of squares") {
  SKIP_WITHOUT_GPU();
  // sizes that cross the 64K chunk and the 36-tensor pack boundaries
  std::vector<int64_t> sizes = {1, 7, 768, 65536, 65537, 200000};
  for (int i = 0; i < 40; ++i) sizes.push_back(33 + i * 5);
  std::vector<Backend::AdamWTensor> on_cpu, on_gpu;
  uint64_t seed = 1700;
  for (int64_t n : sizes) {
    Tensor p = random_normal({n}, ++seed), g = random_normal({n}, ++seed);
    Tensor m = ops::mul_scalar(random_normal({n}, ++seed), 0.1);
    Tensor v = ops::mul_scalar(random_positive({n}, ++seed), 0.01);
    const double wd = (n % 2) ? 0.0 : 0.1;
    on_cpu.push_back({p.clone(), g, m.clone(), v.clone(), wd});
    on_gpu.push_back({gpu(p), gpu(g), gpu(m), gpu(v), wd});
  }
  // Views one element into their storage: 4-byte but not 16-byte aligned, so the kernel
  // takes its scalar loop for them (and the float4 loop for the aligned ones around them).
  for (int64_t n : {int64_t(5), int64_t(65536 + 6)}) {
    Tensor p = random_normal({n + 1}, ++seed), g = random_normal({n + 1}, ++seed);
    Tensor m = ops::mul_scalar(random_normal({n + 1}, ++seed), 0.1);
    Tensor v = ops::mul_scalar(random_positive({n + 1}, ++seed), 0.01);
    auto tail = [n](const Tensor& t) { return ops::narrow(t, 0, 1, n); };
    sizes.push_back(n);
    on_cpu.push_back({tail(p).clone(), tail(g).clone(), tail(m).clone(), tail(v).clone(), 0.1});
    on_gpu.push_back({tail(gpu(p)), tail(gpu(g)), tail(gpu(m)), tail(gpu(v)), 0.1});
  }
  for (int64_t step : {1, 2, 10}) {
    cpu_backend().adamw(on_cpu, 1e-3, 0.9, 0.999, 1e-8, step);
    cuda_backend().adamw(on_gpu, 1e-3, 0.9, 0.999, 1e-8, step);
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    INFO("tensor " << i << " of " << sizes[i] << " elements");
    CHECK_CLOSE(on_gpu[i].param, on_cpu[i].param, "param");
    CHECK_CLOSE(on_gpu[i].exp_avg, on_cpu[i].exp_avg, "exp_avg");
    CHECK_CLOSE(on_gpu[i].exp_avg_sq, on_cpu[i].exp_avg_sq, "exp_avg_sq");
  }
  std::vector<Tensor> grads_cpu, grads_gpu;
  for (size_t i = 0; i < sizes.size(); ++i) {
    grads_cpu.push_back(on_cpu[i].grad);
    grads_gpu.push_back(on_gpu[i].grad);
  }
  const double ref = cpu_backend().sum_of_squares(grads_cpu);
  const double got = cuda_backend().sum_of_squares(grads_gpu);
  CHECK(std::abs(got - ref) <= 1e-5 * ref);
}

TEST_CASE("cuda: unsupported dtypes fail with the op and dtype named") {
  SKIP_WITHOUT_GPU();
  Tensor x = random_normal({4, 4}, 1900).to(DType::Float64).to(kGpu);
  try {
    ops::softmax(x, -1);
    FAIL("expected an error for float64 softmax on CUDA");
  } catch (const Error& e) {
    const std::string message = e.what();
    CHECK(message.find("softmax") != std::string::npos);
    CHECK(message.find("float64") != std::string::npos);
  }
}

#ifdef MMS_WITH_CUDA
// The naive (teaching) kernels stay correct: each against its tuned sibling.
TEST_CASE("cuda: naive kernels agree with the tuned ones") {
  SKIP_WITHOUT_GPU();
  cudaStream_t stream = cuda::stream();
  const int64_t rows = 37, cols = 131;
  Tensor x = gpu(random_normal({rows, cols}, 2000));
  Tensor a = empty({rows, cols}, DType::Float32, kGpu), b = empty({rows, cols}, DType::Float32, kGpu);
  const float* xp = x.data<float>();
  for (bool log : {false, true}) {
    cuda::softmax_forward_f32(xp, a.data<float>(), rows, cols, log, stream);
    cuda::softmax_forward_f32_naive(xp, b.data<float>(), rows, cols, log, stream);
    CHECK_CLOSE(b, a, "softmax naive");
  }
  Tensor mean_a = empty({rows}, DType::Float32, kGpu), mean_b = empty({rows}, DType::Float32, kGpu);
  Tensor rstd_a = empty({rows}, DType::Float32, kGpu), rstd_b = empty({rows}, DType::Float32, kGpu);
  cuda::layer_norm_forward_f32(xp, nullptr, nullptr, a.data<float>(), mean_a.data<float>(), rstd_a.data<float>(),
                               rows, cols, 1e-5f, stream);
  cuda::layer_norm_forward_f32_naive(xp, nullptr, nullptr, b.data<float>(), mean_b.data<float>(),
                                     rstd_b.data<float>(), rows, cols, 1e-5f, stream);
  CHECK_CLOSE(b, a, "layer_norm naive");
  for (auto op : {cuda::ReduceKind::Sum, cuda::ReduceKind::Max, cuda::ReduceKind::LogSumExp}) {
    cuda::reduce_last_f32(op, xp, rows, cols, mean_a.data<float>(), stream);
    cuda::reduce_last_f32_naive(op, xp, rows, cols, mean_b.data<float>(), stream);
    CHECK_CLOSE(mean_b, mean_a, "reduce naive");
  }
  Tensor w = gpu(random_normal({cols, 29}, 2001));
  Tensor c1 = empty({rows, 29}, DType::Float32, kGpu), c2 = empty({rows, 29}, DType::Float32, kGpu);
  cuda::gemm_strided_batched_f32(false, false, 1, rows, 29, cols, 1.0f, xp, 0, w.data<float>(), 0, 0.0f,
                                 c1.data<float>(), 0, stream);
  cuda::gemm_strided_batched_f32_naive(false, false, 1, rows, 29, cols, 1.0f, xp, 0, w.data<float>(), 0, 0.0f,
                                       c2.data<float>(), 0, stream);
  CHECK_CLOSE(c2, c1, "gemm naive");

  const cuda::AttentionShape shape{2, 3, 45, 45, 64};
  Tensor q = gpu(random_normal({2, 3, 45, 64}, 2002)), k = gpu(random_normal({2, 3, 45, 64}, 2003));
  Tensor v = gpu(random_normal({2, 3, 45, 64}, 2004)), g = gpu(random_normal({2, 3, 45, 64}, 2005));
  Tensor o1 = empty(q.shape(), DType::Float32, kGpu), o2 = empty(q.shape(), DType::Float32, kGpu);
  Tensor l1 = empty({2, 3, 45}, DType::Float32, kGpu), l2 = empty({2, 3, 45}, DType::Float32, kGpu);
  cuda::attention_forward_f32(q.data<float>(), k.data<float>(), v.data<float>(), nullptr, true, 0.125f,
                              o1.data<float>(), l1.data<float>(), shape, stream);
  cuda::attention_forward_f32_naive(q.data<float>(), k.data<float>(), v.data<float>(), nullptr, true, 0.125f,
                                    o2.data<float>(), l2.data<float>(), shape, stream);
  CHECK_CLOSE(o2, o1, "attention naive out");
  CHECK_CLOSE(l2, l1, "attention naive lse");
  Tensor gq1 = empty(q.shape(), DType::Float32, kGpu), gk1 = empty(q.shape(), DType::Float32, kGpu),
         gv1 = empty(q.shape(), DType::Float32, kGpu);
  Tensor gq2 = empty(q.shape(), DType::Float32, kGpu), gk2 = empty(q.shape(), DType::Float32, kGpu),
         gv2 = empty(q.shape(), DType::Float32, kGpu);
  cuda::attention_backward_f32(g.data<float>(), q.data<float>(), k.data<float>(), v.data<float>(), o1.data<float>(),
                               l1.data<float>(), nullptr, true, 0.125f, gq1.data<float>(), gk1.data<float>(),
                               gv1.data<float>(), shape, stream);
  cuda::attention_backward_f32_naive(g.data<float>(), q.data<float>(), k.data<float>(), v.data<float>(),
                                     o1.data<float>(), l1.data<float>(), nullptr, true, 0.125f, gq2.data<float>(),
                                     gk2.data<float>(), gv2.data<float>(), shape, stream);
  CHECK_CLOSE(gq2, gq1, "attention naive grad_q");
  CHECK_CLOSE(gk2, gk1, "attention naive grad_k");
  CHECK_CLOSE(gv2, gv1, "attention naive grad_v");

  // copies: contiguous float32 -> bfloat16 (n % 4 = 3: vector body and tail) and the
  // transposing copy [B, L, H, D] -> [B, H, L, D] with D = 64, float32 -> bfloat16;
  // bit-exact (every path converts each element the same way)
  auto exact = [](const Tensor& got, const Tensor& ref) {
    return relative_error(ops::cast(got, DType::Float64), ops::cast(ref, DType::Float64)) == 0.0;
  };
  const int64_t n = rows * cols;  // 4847
  Tensor h1 = empty({rows, cols}, DType::BFloat16, kGpu), h2 = empty({rows, cols}, DType::BFloat16, kGpu);
  cuda::convert_contiguous(xp, cuda::ScalarType::Float32, h1.raw_data(), cuda::ScalarType::BFloat16, n, stream);
  cuda::convert_contiguous_naive(xp, cuda::ScalarType::Float32, h2.raw_data(), cuda::ScalarType::BFloat16, n, stream);
  CHECK(exact(h1, h2));
  CHECK(exact(h1, ops::cast(x, DType::BFloat16)));
  const Shape heads = {2, 9, 3, 64};  // [B, L, H, D]
  Tensor t = gpu(random_normal(heads, 2006));
  const int64_t sizes[4] = {2, 3, 9, 64};                    // [B, H, L, D]
  const int64_t dst_strides[4] = {3 * 9 * 64, 9 * 64, 64, 1};  // contiguous
  const int64_t src_strides[4] = {9 * 3 * 64, 64, 3 * 64, 1};  // t viewed as [B, H, L, D]
  const int64_t* strides[2] = {dst_strides, src_strides};
  cuda::StridedLayout layouts[2];
  REQUIRE(cuda::coalesce_layouts(4, sizes, strides, 2, layouts));
  Tensor t1 = empty({2, 3, 9, 64}, DType::BFloat16, kGpu), t2 = empty({2, 3, 9, 64}, DType::BFloat16, kGpu);
  cuda::copy_strided(t.raw_data(), cuda::ScalarType::Float32, t1.raw_data(), cuda::ScalarType::BFloat16, layouts,
                     t.numel(), stream);
  cuda::copy_strided_naive(t.raw_data(), cuda::ScalarType::Float32, t2.raw_data(), cuda::ScalarType::BFloat16, layouts,
                           t.numel(), stream);
  CHECK(exact(t1, t2));
  CHECK(exact(t1, ops::cast(ops::transpose(t, 1, 2), DType::BFloat16)));

  // quick_gelu backward: float4 path (n % 4 = 3) against the generic kernel
  Tensor go = gpu(random_normal({rows, cols}, 2007));
  const cuda::StridedLayout flat{1, {n}, {1}};
  const cuda::StridedLayout flat3[3] = {flat, flat, flat};
  cuda::unary_backward_f32(cuda::UnaryKind::QuickGelu, go.data<float>(), xp, a.data<float>(), flat3, n, 0.0f, 0.0f,
                           stream);
  cuda::unary_backward_f32_naive(cuda::UnaryKind::QuickGelu, go.data<float>(), xp, b.data<float>(), flat3, n, 0.0f,
                                 0.0f, stream);
  CHECK_CLOSE(b, a, "unary_backward naive");
}
#endif
