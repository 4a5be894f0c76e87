#include "losses/pairwise.h"

#include <cmath>

#include "losses/loss_utils.h"

namespace mms::losses {

// The pair list is built on the host from gold and valid (small: at most B K^2 / 2);
// scores are gathered on their device by flat index, so the arithmetic runs there.
Tensor pairwise_logistic_loss(const Tensor& scores, const Tensor& gold, const Tensor& valid) {
  const char* op = "pairwise_logistic_loss";
  check_list_inputs(op, scores, gold);
  const int64_t lists = scores.size(0), width = scores.size(1);
  std::vector<uint8_t> mask = host_mask(op, valid, scores.shape());
  std::vector<double> y = host_values(gold);

  std::vector<int64_t> better, worse;  // flat indices of (i, j) with y_i > y_j
  for (int64_t b = 0; b < lists; ++b) {
    for (int64_t i = 0; i < width; ++i) {
      const int64_t fi = b * width + i;
      if (!mask[fi]) continue;
      MMS_CHECK(std::isfinite(y[fi]), op, ": gold rating of list ", b, " item ", i, " is ", y[fi],
                "; gold ratings of valid items must be finite");
      for (int64_t j = 0; j < width; ++j) {
        const int64_t fj = b * width + j;
        if (mask[fj] && y[fi] > y[fj]) {
          better.push_back(fi);
          worse.push_back(fj);
        }
      }
    }
  }
  const int64_t pairs = static_cast<int64_t>(better.size());
  if (pairs == 0) return zero_loss(op, scores);

  const Device device = scores.device();
  Tensor keep = valid.defined() ? from_vector<uint8_t>(mask, scores.shape()).to(device) : Tensor();
  check_finite(op, "scores", scores, keep);

  Tensor flat = ops::reshape(scores, {lists * width, 1});
  Tensor better_t = from_vector<int64_t>(better, {pairs}).to(device);
  Tensor worse_t = from_vector<int64_t>(worse, {pairs}).to(device);
  // d = s_j - s_i  [P, 1]; softplus(d) = relu(d) + log1p(exp(-|d|))
  Tensor d = ops::sub(ops::index_select(flat, 0, worse_t), ops::index_select(flat, 0, better_t));
  Tensor softplus = ops::add(ops::relu(d), ops::unary(UnaryOp::Log1p, ops::exp(ops::neg(ops::abs(d)))));
  const double inverse_count = 1.0 / static_cast<double>(pairs);
  Tensor loss = ops::mul_scalar(ops::sum(softplus), inverse_count);
  const Shape shape = scores.shape();
  return record(op, loss, {scores},
                [d, better_t, worse_t, inverse_count, shape](const Tensor& g, const std::vector<bool>&) {
                  Tensor gd = ops::mul(ops::sigmoid(d), ops::mul_scalar(g, inverse_count));  // dL/dd
                  Shape flat_shape{shape_numel(shape), 1};
                  Tensor grad = ops::sub(ops::index_add(flat_shape, 0, worse_t, gd),
                                         ops::index_add(flat_shape, 0, better_t, gd));
                  return std::vector<Tensor>{ops::reshape(grad, shape)};
                });
}

}  // namespace mms::losses
