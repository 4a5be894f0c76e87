#include "losses/loss_utils.h"

#include <cmath>
#include <utility>

namespace mms::losses {

std::vector<uint8_t> host_mask(const char* loss, const Tensor& valid, const Shape& shape) {
  if (!valid.defined()) return std::vector<uint8_t>(static_cast<size_t>(shape_numel(shape)), 1);
  MMS_CHECK(valid.dtype() == DType::Bool || valid.dtype() == DType::UInt8, loss,
            ": the validity mask must be bool or uint8, got ", dtype_name(valid.dtype()));
  MMS_CHECK(valid.shape() == shape, loss, ": the validity mask has shape ", shape_str(valid.shape()),
            " but the scores have ", shape_str(shape));
  std::vector<double> values = valid.to_vector<double>();
  std::vector<uint8_t> mask(values.size());
  for (size_t i = 0; i < values.size(); ++i) mask[i] = values[i] != 0.0 ? 1 : 0;
  return mask;
}

std::vector<double> host_values(const Tensor& x) { return x.to_vector<double>(); }

void check_floating_input(const char* loss, const char* what, const Tensor& x) {
  MMS_CHECK(x.defined(), loss, ": ", what, " is undefined");
  MMS_CHECK(x.dtype() == DType::Float32 || x.dtype() == DType::Float64, loss, ": ", what,
            " must be float32 or float64, got ", dtype_name(x.dtype()));
}

Tensor zero_outside(const Tensor& x, const Tensor& keep) {
  if (!keep.defined()) return x;
  return ops::where(keep, x, full({}, 0.0, x.dtype(), x.device()));
}

namespace {
// "[i, j]" for flat index `flat` of `shape`.
std::string index_str(int64_t flat, const Shape& shape) {
  std::vector<int64_t> index(shape.size());
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    index[d] = shape[d] == 0 ? 0 : flat % shape[d];
    flat = shape[d] == 0 ? 0 : flat / shape[d];
  }
  return shape_str(index);
}
}  // namespace

namespace {
thread_local DeferFiniteChecks* t_deferral = nullptr;
}  // namespace

DeferFiniteChecks::DeferFiniteChecks() : outer_(t_deferral) { t_deferral = this; }
DeferFiniteChecks::~DeferFiniteChecks() { t_deferral = outer_; }
std::vector<PendingFiniteCheck> DeferFiniteChecks::take() { return std::exchange(queued_, {}); }

void check_finite(const char* loss, const char* what, const Tensor& x, const Tensor& keep) {
  if (x.numel() == 0) return;
  NoGradGuard no_grad;
  // x * 0 is 0 for every finite x and NaN for NaN or +/-inf, so one sum answers
  // "is anything non-finite" without overflow on large finite values.
  PendingFiniteCheck check{loss, what, x, keep, ops::sum(ops::mul_scalar(zero_outside(x, keep), 0.0))};
  if (t_deferral != nullptr) {
    t_deferral->queue(std::move(check));
    return;
  }
  if (!std::isfinite(check.probe.item())) raise_non_finite(check);
}

void raise_non_finite(const PendingFiniteCheck& check) {
  const Tensor& x = check.x;
  std::vector<double> values = host_values(x);
  std::vector<double> kept = check.keep.defined() ? host_values(check.keep) : std::vector<double>(values.size(), 1.0);
  for (size_t i = 0; i < values.size(); ++i) {
    if (kept[i] != 0.0 && !std::isfinite(values[i]))
      fail(check.loss, ": ", check.what, " ", shape_str(x.shape()), " has a non-finite value (", values[i],
           ") at ", index_str(static_cast<int64_t>(i), x.shape()),
           "; the loss is undefined there (check the model output for overflow)");
  }
  fail(check.loss, ": ", check.what, " has a non-finite value");  // unreachable unless the device disagrees
}

Tensor zero_loss(const char* op, const Tensor& x) {
  Tensor zero = full({}, 0.0, x.dtype(), x.device());
  const Shape shape = x.shape();
  const DType dtype = x.dtype();
  const Device device = x.device();
  return record(op, zero, {x}, [shape, dtype, device](const Tensor&, const std::vector<bool>&) {
    return std::vector<Tensor>{zeros(shape, dtype, device)};
  });
}

void check_list_inputs(const char* op, const Tensor& scores, const Tensor& gold) {
  check_floating_input(op, "scores", scores);
  check_floating_input(op, "gold", gold);
  MMS_CHECK(scores.dim() == 2, op, ": scores must be [B, K], got ", shape_str(scores.shape()));
  MMS_CHECK(gold.shape() == scores.shape(), op, ": gold ", shape_str(gold.shape()),
            " does not match scores ", shape_str(scores.shape()));
}

}  // namespace mms::losses
