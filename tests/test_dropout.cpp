// Fused dropout (tensor/cpu/dropout.cpp, cuda/dropout.cu): bit-identical to the
// four-launch composition it replaced (rand, compare, where, mul; written out below) for
// float32 and float64, odd sizes, odd offsets, non-contiguous inputs, p = 0 and p = 1;
// its backward regenerates the same mask (float64 gradcheck); CUDA agrees with the CPU
// bit for bit (skips with a visible message without a GPU).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "autograd/api.h"
#include "autograd/gradcheck.h"
#include "tensor/backend.h"
#include "tensor/ops.h"
#include "tensor/tensor.h"
#include "tensor/view.h"

#include "device_test_utils.h"

using namespace mms;

namespace {

// The composition autograd's dropout used before the fused kernel, as it was written.
Tensor composed_dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset) {
  Tensor u = rand(x.shape(), seed, offset, x.dtype(), x.device());
  Tensor keep = ops::binary(BinaryOp::Ge, u, full({}, p, x.dtype(), x.device()));
  Tensor scale = full({}, p < 1.0 ? 1.0 / (1.0 - p) : 0.0, x.dtype(), x.device());
  Tensor mask = ops::where(keep, scale, full({}, 0.0, x.dtype(), x.device()));
  return ops::mul(x, mask);
}

// Same shape, dtype and bytes (so -0 vs +0 and NaN payloads count), both moved to the CPU.
bool same_bits(const Tensor& got, const Tensor& ref) {
  if (got.shape() != ref.shape() || got.dtype() != ref.dtype()) return false;
  const Tensor g = got.to(Device::cpu()).contiguous(), r = ref.to(Device::cpu()).contiguous();
  return std::memcmp(g.raw_data(), r.raw_data(), size_t(g.numel()) * g.element_size()) == 0;
}

// Count of elements where got and ref differ bitwise (for a readable failure).
int64_t bit_mismatches(const Tensor& got, const Tensor& ref) {
  const Tensor g = got.to(Device::cpu()).contiguous(), r = ref.to(Device::cpu()).contiguous();
  const size_t size = g.element_size();
  const auto* a = static_cast<const unsigned char*>(g.raw_data());
  const auto* b = static_cast<const unsigned char*>(r.raw_data());
  int64_t count = 0;
  for (int64_t i = 0; i < g.numel(); ++i) count += std::memcmp(a + i * size, b + i * size, size) != 0;
  return count;
}

#define CHECK_SAME_BITS(got, ref)                                              \
  do {                                                                         \
    const Tensor got_ = (got), ref_ = (ref);                                   \
    REQUIRE(got_.shape() == ref_.shape());                                     \
    INFO("bitwise mismatches: " << bit_mismatches(got_, ref_) << " of " << ref_.numel()); \
    CHECK(same_bits(got_, ref_));                                              \
  } while (0)

const std::vector<Shape> kShapes = {{1}, {3}, {7}, {5, 3}, {17, 33}, {2, 3, 129}, {0, 4},
                                    {300, 257}};  // the last one runs on the thread pool
const std::vector<uint64_t> kOffsets = {0, 1, 2, 3, 6, 1001};

}  // namespace

TEST_CASE("dropout: fused CPU kernel is bit-identical to rand + compare + where + mul") {
  uint64_t seed = 40;
  for (DType dtype : {DType::Float32, DType::Float64}) {
    for (const Shape& shape : kShapes) {
      const Tensor x = randn(shape, seed++, 0, dtype);
      for (double p : {0.1, 0.5, 0.9}) {
        for (uint64_t offset : kOffsets) {
          INFO(dtype_name(dtype) << " shape " << shape_str(shape) << " p " << p << " offset " << offset);
          CHECK_SAME_BITS(ops::dropout(x, p, 77, offset), composed_dropout(x, p, 77, offset));
        }
      }
    }
  }
}

TEST_CASE("dropout: non-contiguous inputs follow the logical row-major order") {
  for (DType dtype : {DType::Float32, DType::Float64}) {
    INFO(dtype_name(dtype));
    const Tensor base = randn({13, 9}, 3, 0, dtype);
    const Tensor transposed = transpose(base, 0, 1);         // [9, 13], strides (1, 9)
    const Tensor sliced = narrow(transposed, 1, 2, 7);        // [9, 7], offset storage
    const Tensor expanded = expand(randn({1, 5}, 4, 0, dtype), {6, 5});  // stride 0
    for (const Tensor& x : {transposed, sliced, expanded}) {
      REQUIRE_FALSE(x.is_contiguous());
      for (double p : {0.1, 0.5, 0.9}) {
        INFO("shape " << shape_str(x.shape()) << " p " << p);
        CHECK_SAME_BITS(ops::dropout(x, p, 9, 3), composed_dropout(x, p, 9, 3));
        CHECK_SAME_BITS(ops::dropout(x, p, 9, 3), ops::dropout(x.contiguous(), p, 9, 3));
      }
    }
  }
}

TEST_CASE("dropout: p = 0 keeps x, p = 1 zeroes it, special values as x * mask") {
  for (DType dtype : {DType::Float32, DType::Float64}) {
    INFO(dtype_name(dtype));
    const double inf = std::numeric_limits<double>::infinity();
    const Tensor x = ops::cast(from_vector<double>({-1.5, 0.0, -0.0, 2.0, inf, -inf, NAN, 3.25, -7.0}, {9}),
                               dtype);
    for (double p : {0.0, 0.1, 0.5, 0.9, 1.0}) {
      INFO("p " << p);
      CHECK_SAME_BITS(ops::dropout(x, p, 5, 1), composed_dropout(x, p, 5, 1));
    }
    // p = 0: every u >= 0 and the scale is 1, so out == x bit for bit
    const Tensor y = randn({37}, 8, 0, dtype);
    CHECK_SAME_BITS(ops::dropout(y, 0.0, 5, 2), y);
    // p = 1: every element is x * 0
    CHECK_SAME_BITS(ops::dropout(y, 1.0, 5, 2), ops::mul(y, full({}, 0.0, dtype)));
    // the autograd entry returns x itself for p = 0 and outside training
    CHECK(dropout(y, 0.0, true, 5, 2).same_impl(y));
    CHECK(dropout(y, 0.5, false, 5, 2).same_impl(y));
  }
}

TEST_CASE("dropout: stream positions wrap modulo 2^64 like rand's") {
  const uint64_t near_end = std::numeric_limits<uint64_t>::max() - 5;
  for (DType dtype : {DType::Float32, DType::Float64}) {
    const Tensor x = randn({23}, 12, 0, dtype);
    CHECK_SAME_BITS(ops::dropout(x, 0.5, 31, near_end), composed_dropout(x, 0.5, 31, near_end));
  }
}

TEST_CASE("dropout: bad arguments are rejected with the op named") {
  const Tensor x = randn({4}, 1);
  CHECK_THROWS_WITH_AS(ops::dropout(x, 1.5, 0, 0), doctest::Contains("dropout"), Error);
  CHECK_THROWS_WITH_AS(ops::dropout(x, -0.1, 0, 0), doctest::Contains("dropout"), Error);
  CHECK_THROWS_WITH_AS(ops::dropout(ops::cast(x, DType::Int64), 0.5, 0, 0), doctest::Contains("dropout"),
                       Error);
  CHECK_THROWS_WITH_AS(dropout(x, 2.0, true, 0, 0), doctest::Contains("dropout"), Error);
}

TEST_CASE("dropout: backward regenerates the forward's mask (no mask saved)") {
  for (DType dtype : {DType::Float32, DType::Float64}) {
    INFO(dtype_name(dtype));
    Tensor x = randn({6, 11}, 21, 0, dtype);
    x.set_requires_grad(true);
    const Tensor upstream = randn({6, 11}, 22, 0, dtype);
    dropout(x, 0.3, true, 17, 5).backward(upstream);
    // the old backward: g * mask, mask = where(u >= p, 1/(1-p), 0)
    const Tensor ones_like_x = ones({6, 11}, dtype);
    const Tensor mask = composed_dropout(ones_like_x, 0.3, 17, 5);
    CHECK_SAME_BITS(x.grad(), ops::mul(upstream, mask));
  }
}

TEST_CASE("dropout: float64 gradcheck with fixed seed and offsets") {
  GradcheckResult r;
  Tensor a = uniform({5, 7}, -1.0, 1.0, 300, 0, DType::Float64);
  a.set_requires_grad(true);
  for (uint64_t offset : {0ull, 3ull, 10ull}) {
    for (double p : {0.1, 0.5, 0.9}) {
      INFO("p " << p << " offset " << offset);
      r = gradcheck([p, offset](const std::vector<Tensor>& x) { return dropout(x[0], p, true, 13, offset); },
                    {a});
      INFO(r.message);
      CHECK(r.ok);
      // through a transposed view (non-contiguous input to the fused op and its backward)
      r = gradcheck(
          [p, offset](const std::vector<Tensor>& x) {
            return dropout(transpose(x[0], 0, 1), p, true, 13, offset);
          },
          {a});
      INFO(r.message);
      CHECK(r.ok);
    }
  }
}

TEST_CASE("dropout: CUDA matches the CPU bit for bit") {
  SKIP_WITHOUT_GPU();
  const Device gpu = Device::cuda(0);
  uint64_t seed = 60;
  for (DType dtype : {DType::Float32, DType::Float64}) {
    for (const Shape& shape : kShapes) {
      const Tensor x = randn(shape, seed++, 0, dtype);
      const Tensor xg = x.to(gpu);
      for (double p : {0.0, 0.1, 0.5, 0.9, 1.0}) {
        // float32: offsets 0 and 4 take the float4 path, 2 the float2 path, odd ones the
        // per-lane path
        for (uint64_t offset : {0ull, 1ull, 2ull, 3ull, 4ull, 1001ull}) {
          INFO(dtype_name(dtype) << " shape " << shape_str(shape) << " p " << p << " offset " << offset);
          CHECK_SAME_BITS(ops::dropout(xg, p, 77, offset), ops::dropout(x, p, 77, offset));
        }
      }
    }
  }
  // the four-launch composition on the GPU (float32: CUDA's compare/where/mul) agrees too
  const Tensor x = randn({129, 77}, 5, 0, DType::Float32, gpu);
  CHECK_SAME_BITS(ops::dropout(x, 0.1, 3, 6), composed_dropout(x, 0.1, 3, 6));
  // contiguous views at storage offsets 1 and 2 (4- and 8-byte aligned: no float4; the
  // float2 path needs 8) with stream offsets of every head, and a transposed view
  const Tensor flat = randn({1001}, 6, 0, DType::Float32, gpu);
  for (int64_t shift : {1, 2}) {
    const Tensor shifted = narrow(flat, 0, shift, 997);
    for (uint64_t offset : {8ull, 9ull, 10ull, 11ull}) {
      INFO("storage offset " << shift << " stream offset " << offset);
      CHECK_SAME_BITS(ops::dropout(shifted, 0.5, 3, offset),
                      ops::dropout(shifted.to(Device::cpu()), 0.5, 3, offset));
    }
  }
  const Tensor transposed = transpose(randn({13, 9}, 7, 0, DType::Float32, gpu), 0, 1);
  CHECK_SAME_BITS(ops::dropout(transposed, 0.5, 3, 2), ops::dropout(transposed.to(Device::cpu()), 0.5, 3, 2));
  // backward on the GPU: the same regenerated mask
  Tensor leaf = randn({6, 11}, 21, 0, DType::Float32, gpu);
  leaf.set_requires_grad(true);
  const Tensor upstream = randn({6, 11}, 22, 0, DType::Float32, gpu);
  dropout(leaf, 0.3, true, 17, 5).backward(upstream);
  CHECK_SAME_BITS(leaf.grad(), ops::dropout(upstream.to(Device::cpu()), 0.3, 17, 5));
}
