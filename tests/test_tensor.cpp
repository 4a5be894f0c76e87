// Tensor basics: views share storage, strides and offsets are right, factories fill
// what they say, conversions round-trip, and bad requests throw mms::Error.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/api.h"

using namespace mms;

TEST_CASE("factories and item") {
  Tensor z = zeros({2, 3});
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.strides() == Shape{3, 1});
  CHECK(z.dtype() == DType::Float32);
  for (float v : z.to_vector<float>()) CHECK(v == 0.0f);
  CHECK(full({}, 2.5, DType::Float64).item() == 2.5);
  Tensor r = arange(0, 5);
  CHECK(r.dtype() == DType::Int64);
  CHECK(r.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4});
  CHECK(arange(1, 2, 0.25, DType::Float64).to_vector<double>() == std::vector<double>{1, 1.25, 1.5, 1.75});
  CHECK_THROWS_AS(zeros({2}).item(), Error);
}

TEST_CASE("views share storage and compute strides") {
  Tensor x = from_vector<float>({0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor t = ops::transpose(x, 0, 1);
  CHECK(t.shape() == Shape{3, 2});
  CHECK(t.strides() == Shape{1, 3});
  CHECK(!t.is_contiguous());
  CHECK(t.contiguous().to_vector<float>() == std::vector<float>{0, 3, 1, 4, 2, 5});
  // No elements, nothing out of place: a fresh [2, 3, 0, 8] (strides keep the size-0 dim
  // as 1) and a transposed one are contiguous, so kernels that require it accept them.
  CHECK(zeros({2, 3, 0, 8}).is_contiguous());
  CHECK(ops::transpose(zeros({2, 0, 3}), 0, 2).is_contiguous());
  CHECK(t.storage() == x.storage());

  Tensor n = ops::narrow(x, 1, 1, 2);
  CHECK(n.offset() == 1);
  CHECK(n.to_vector<float>() == std::vector<float>{1, 2, 4, 5});
  CHECK(ops::select(x, 0, 1).to_vector<float>() == std::vector<float>{3, 4, 5});

  Tensor e = ops::expand(from_vector<float>({7, 8}, {2, 1}), {2, 3});
  CHECK(e.strides()[1] == 0);
  CHECK(e.to_vector<float>() == std::vector<float>{7, 7, 7, 8, 8, 8});

  Tensor r = ops::reshape(x, {3, -1});
  CHECK(r.shape() == Shape{3, 2});
  CHECK(r.storage() == x.storage());  // a view, no copy
  // A transposed tensor cannot be flattened without a copy: reshape copies, view throws.
  CHECK_THROWS_AS(ops::view(t, {6}), Error);
  CHECK(ops::reshape(t, {6}).to_vector<float>() == std::vector<float>{0, 3, 1, 4, 2, 5});
  CHECK(ops::unsqueeze(x, 1).shape() == Shape{2, 1, 3});
  CHECK(ops::squeeze(ops::unsqueeze(x, 0)).shape() == Shape{2, 3});
  CHECK(ops::permute(ops::reshape(arange(0, 24, 1, DType::Float32), {2, 3, 4}), {2, 0, 1}).shape() ==
        Shape{4, 2, 3});
}

TEST_CASE("dtype conversions") {
  Tensor x = from_vector<double>({1.0 / 3.0, -2.5, 65504.0, 1e-7}, {4});
  std::vector<float> bf = x.to(DType::BFloat16).to(DType::Float32).to_vector<float>();
  CHECK(bf[0] == doctest::Approx(0.333984375));  // bf16 0x3EAB
  CHECK(bf[1] == -2.5f);
  std::vector<float> half = x.to(DType::Float16).to(DType::Float32).to_vector<float>();
  CHECK(half[2] == 65504.0f);                        // the largest finite half
  CHECK(half[3] == doctest::Approx(1.1920929e-07));  // subnormal half 2 * 2^-24
  CHECK(x.to(DType::Int64).to_vector<int64_t>() == std::vector<int64_t>{0, -2, 65504, 0});
  CHECK(from_vector<double>({0.0, 2.0}, {2}).to(DType::Bool).to_vector<bool>() == std::vector<bool>{false, true});
}

TEST_CASE("printing is readable") {
  Tensor x = from_vector<float>({1, 2, 3, 4}, {2, 2});
  CHECK(x.str() == "Tensor([[1, 2],\n        [3, 4]], shape=[2, 2], dtype=float32)");
  Tensor big = arange(0, 10, 1, DType::Int64);
  CHECK(big.str() == "Tensor([0, 1, 2, ..., 7, 8, 9], shape=[10], dtype=int64)");
}

TEST_CASE("random streams are counter-based and reproducible") {
  Tensor a = rand({1000}, 42, 0, DType::Float64);
  Tensor b = rand({500}, 42, 500, DType::Float64);  // the second half of the same stream
  std::vector<double> va = a.to_vector<double>(), vb = b.to_vector<double>();
  for (int i = 0; i < 500; ++i) CHECK(va[500 + i] == vb[i]);
  double mean = 0;
  for (double v : va) {
    CHECK(v >= 0.0);
    CHECK(v < 1.0);
    mean += v / 1000.0;
  }
  CHECK(mean == doctest::Approx(0.5).epsilon(0.05));
  Tensor n = randn({20000}, 7, 0, DType::Float64);
  CHECK(ops::mean(n).item() == doctest::Approx(0.0).epsilon(0.03));
  CHECK(ops::mean(ops::square(n)).item() == doctest::Approx(1.0).epsilon(0.03));
  // float32 and float64 draws are the same numbers (rounded).
  CHECK(rand({8}, 3, 0, DType::Float32).to_vector<float>()[5] ==
        static_cast<float>(rand({8}, 3, 0, DType::Float64).to_vector<double>()[5]));
}

TEST_CASE("broadcasting follows NumPy") {
  Tensor a = from_vector<float>({1, 2, 3}, {3});
  Tensor b = from_vector<float>({10, 20}, {2, 1});
  Tensor c = ops::add(a, b);
  CHECK(c.shape() == Shape{2, 3});
  CHECK(c.to_vector<float>() == std::vector<float>{11, 12, 13, 21, 22, 23});
  CHECK_THROWS_WITH_AS(ops::add(zeros({2, 3}), zeros({4})),
                       "add: shapes [2, 3] and [4] cannot be broadcast together", Error);
}

TEST_CASE("bad input names the op and the shapes") {
  CHECK_THROWS_WITH_AS(ops::matmul(zeros({2, 3}), zeros({4, 5})),
                       "matmul: shapes [2, 3] and [4, 5] do not agree on the inner dimension (3 vs 4)", Error);
  CHECK_THROWS_WITH_AS(ops::add(zeros({2}), zeros({2}, DType::Float64)),
                       "add: dtypes differ (float32 [2] and float64 [2])", Error);
  CHECK_THROWS_AS(ops::narrow(zeros({4}), 0, 2, 3), Error);
  CHECK_THROWS_AS(ops::transpose(zeros({2, 2}), 0, 2), Error);
  CHECK_THROWS_AS(ops::index_select(zeros({3, 2}), 0, from_vector<int64_t>({0, 3}, {2})), Error);
  CHECK_THROWS_AS(ops::index_select(zeros({3, 2}), 0, from_vector<int64_t>({-1}, {1})), Error);
  if (!cuda_available()) CHECK_THROWS_AS(zeros({2}).to(Device::cuda(0)), Error);  // clear error, no crash
  CHECK_THROWS_AS(Device::parse("gpu"), Error);
}
