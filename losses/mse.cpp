#include "losses/mse.h"

#include "losses/loss_utils.h"

namespace mms::losses {

// Forward with raw ops; the saved residual r = v (p - t) gives the backward 2 r / n.
Tensor mse_loss(const Tensor& pred, const Tensor& target, const Tensor& valid) {
  const char* op = "mse_loss";
  check_floating_input(op, "pred", pred);
  check_floating_input(op, "target", target);
  MMS_CHECK(target.shape() == pred.shape(), op, ": target ", shape_str(target.shape()),
            " does not match pred ", shape_str(pred.shape()));
  std::vector<uint8_t> mask = host_mask(op, valid, pred.shape());
  int64_t count = 0;
  for (uint8_t m : mask) count += m;
  if (count == 0) return zero_loss(op, pred);

  const Device device = pred.device();
  Tensor keep = valid.defined() ? from_vector<uint8_t>(mask, pred.shape()).to(device) : Tensor();
  Tensor target_same = ops::cast(target.to(device), pred.dtype());
  check_finite(op, "pred", pred, keep);
  check_finite(op, "target", target_same, keep);

  // Both sides zeroed outside the mask, so padding contributes exactly 0 (even if NaN).
  Tensor residual = ops::sub(zero_outside(pred, keep), zero_outside(target_same, keep));
  const double inverse_count = 1.0 / static_cast<double>(count);
  Tensor loss = ops::mul_scalar(ops::sum(ops::square(residual)), inverse_count);
  return record(op, loss, {pred}, [residual, inverse_count](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{ops::mul(residual, ops::mul_scalar(g, 2.0 * inverse_count))};
  });
}

}  // namespace mms::losses
