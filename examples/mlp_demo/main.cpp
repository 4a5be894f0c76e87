// A two-layer MLP fitted to y = sin(3x) with the engine's autograd and plain gradient
// descent: the smallest complete use of tensors, ops, backward and
// parameter updates, in one screen of code.
#include <cmath>
#include <cstdio>

#include "autograd/api.h"

using namespace mms;

int main() {
  const int64_t n = 256, hidden = 32;
  Tensor x = ops::reshape(arange(-1.0, 1.0, 2.0 / n, DType::Float32), {n, 1});
  std::vector<float> xs = x.to_vector<float>(), ys(n);
  for (int64_t i = 0; i < n; ++i) ys[i] = std::sin(3.0f * xs[i]);
  Tensor y = from_vector<float>(ys, {n, 1});
  Tensor w1 = normal({hidden, 1}, 0.0, 1.0, /*seed=*/1).set_requires_grad();
  Tensor b1 = zeros({hidden}).set_requires_grad();
  Tensor w2 = normal({1, hidden}, 0.0, 1.0 / std::sqrt(double(hidden)), /*seed=*/2).set_requires_grad();
  Tensor b2 = zeros({1}).set_requires_grad();
  std::vector<Tensor> params{w1, b1, w2, b2};

  const double lr = 0.1;
  for (int step = 0; step <= 2000; ++step) {
    Tensor prediction = linear(tanh(linear(x, w1, b1)), w2, b2);
    Tensor loss = mean(square(prediction - y));
    for (Tensor& p : params) p.zero_grad();
    loss.backward();
    NoGradGuard no_grad;
    for (Tensor& p : params) {
      Tensor updated = ops::sub(p, ops::mul_scalar(p.grad(), lr));
      ops::copy_(p, updated);
    }
    if (step % 400 == 0) std::printf("step %4d  mse %.6f\n", step, loss.item());
  }
  return 0;
}
