#include "losses/cross_entropy.h"

#include "losses/loss_utils.h"

namespace mms::losses {

// Targets are read on the host (one small copy) to validate them and to build the
// per-row weight w_i = kept_i / n; the forward and backward then run on the logits'
// device: loss = -sum_i w_i logp[i, t_i],  grad = (exp(logp) * w - scatter(w at t)) * g.
Tensor cross_entropy_loss(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  const char* op = "cross_entropy_loss";
  check_floating_input(op, "logits", logits);
  MMS_CHECK(logits.dim() >= 1, op, ": logits must have a class dim, got ", shape_str(logits.shape()));
  MMS_CHECK(targets.dtype() == DType::Int64, op, ": targets must be int64, got ", dtype_name(targets.dtype()));
  Shape row_shape(logits.shape().begin(), logits.shape().end() - 1);
  MMS_CHECK(targets.shape() == row_shape, op, ": targets ", shape_str(targets.shape()),
            " must be the logits' shape without the class dim, ", shape_str(row_shape));
  const int64_t classes = logits.size(-1);
  const int64_t rows = shape_numel(row_shape);

  std::vector<int64_t> target_values = targets.to_vector<int64_t>();
  std::vector<int64_t> safe_targets(static_cast<size_t>(rows), 0);
  std::vector<uint8_t> kept(static_cast<size_t>(rows), 0);
  int64_t count = 0;
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t t = target_values[i];
    if (t == ignore_index) continue;
    MMS_CHECK(t >= 0 && t < classes, op, ": target ", t, " at row ", i, " is outside [0, ", classes,
              ") and is not the ignore index ", ignore_index);
    safe_targets[i] = t;
    kept[i] = 1;
    ++count;
  }
  if (count == 0) return zero_loss(op, logits);

  const Device device = logits.device();
  const DType dtype = logits.dtype();
  Tensor rows_logits = ops::reshape(logits, {rows, classes});
  Tensor keep_rows = from_vector<uint8_t>(kept, {rows, 1}).to(device);
  Tensor safe_logits = zero_outside(rows_logits, keep_rows);  // ignored rows -> finite zeros
  check_finite(op, "logits", safe_logits);

  std::vector<double> weight_values(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) weight_values[i] = kept[i] ? 1.0 / static_cast<double>(count) : 0.0;
  Tensor weights = from_vector<double>(weight_values, {rows, 1}, dtype, device);
  Tensor index = from_vector<int64_t>(safe_targets, {rows, 1}).to(device);

  Tensor log_probs = ops::log_softmax(safe_logits, 1);
  Tensor picked = ops::gather(log_probs, 1, index);  // [rows, 1]
  Tensor loss = ops::neg(ops::sum(ops::mul(picked, weights)));
  const Shape logits_shape = logits.shape();
  return record(op, loss, {logits},
                [log_probs, weights, index, logits_shape](const Tensor& g, const std::vector<bool>&) {
                  Tensor probs_weighted = ops::mul(ops::exp(log_probs), weights);
                  Tensor onehot_weighted = ops::scatter_add(log_probs.shape(), 1, index, weights);
                  Tensor grad = ops::mul(ops::sub(probs_weighted, onehot_weighted), g);
                  return std::vector<Tensor>{ops::reshape(grad, logits_shape)};
                });
}

}  // namespace mms::losses
