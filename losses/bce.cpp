#include "losses/bce.h"

#include "losses/loss_utils.h"

namespace mms::losses {

Tensor acceptability_targets(const Tensor& mean_rating) {
  check_floating_input("acceptability_targets", "mean_rating", mean_rating);
  Tensor threshold = full({}, kAcceptableThreshold, mean_rating.dtype(), mean_rating.device());
  return ops::cast(ops::binary(BinaryOp::Ge, mean_rating, threshold), mean_rating.dtype());
}

Tensor bce_with_logits_loss(const Tensor& logits, const Tensor& targets, const Tensor& valid) {
  const char* op = "bce_with_logits_loss";
  check_floating_input(op, "logits", logits);
  check_floating_input(op, "targets", targets);
  MMS_CHECK(targets.shape() == logits.shape(), op, ": targets ", shape_str(targets.shape()),
            " do not match logits ", shape_str(logits.shape()));
  std::vector<uint8_t> mask = host_mask(op, valid, logits.shape());
  int64_t count = 0;
  for (uint8_t m : mask) count += m;
  if (count == 0) return zero_loss(op, logits);

  const Device device = logits.device();
  Tensor keep = valid.defined() ? from_vector<uint8_t>(mask, logits.shape()).to(device) : Tensor();
  Tensor x = zero_outside(logits, keep);
  Tensor t = zero_outside(ops::cast(targets.to(device), logits.dtype()), keep);
  check_finite(op, "logits", x);
  check_finite(op, "targets", t);

  // max(x, 0) - x t + log1p(exp(-|x|)), then zero the padding (which would add log 2).
  Tensor per_item = ops::add(ops::sub(ops::relu(x), ops::mul(x, t)),
                             ops::unary(UnaryOp::Log1p, ops::exp(ops::neg(ops::abs(x)))));
  per_item = zero_outside(per_item, keep);
  const double inverse_count = 1.0 / static_cast<double>(count);
  Tensor loss = ops::mul_scalar(ops::sum(per_item), inverse_count);
  return record(op, loss, {logits}, [x, t, keep, inverse_count](const Tensor& g, const std::vector<bool>&) {
    Tensor residual = zero_outside(ops::sub(ops::sigmoid(x), t), keep);
    return std::vector<Tensor>{ops::mul(residual, ops::mul_scalar(g, inverse_count))};
  });
}

}  // namespace mms::losses
