// Dispatch for reductions: move the reduced dims to the end, view the tensor as
// [M, R] and reduce each row. One kernel shape covers every dims/keepdim combination.
#include <algorithm>
#include <limits>

#include "tensor/ops.h"

namespace mms::ops {

namespace {
struct ReductionPlan {
  Tensor rows;     // contiguous [M, R]
  Shape kept;      // output shape with keepdim
  Shape squeezed;  // output shape without keepdim
  int64_t reduced = 1;
};

ReductionPlan plan_reduction(const Tensor& x, std::vector<int64_t> dims, const char* op) {
  const int64_t ndim = x.dim();
  std::vector<bool> is_reduced(ndim, dims.empty());
  for (int64_t d : dims) {
    const int64_t w = wrap_dim(d, ndim, op);
    MMS_CHECK(ndim == 0 || !is_reduced[w], op, ": dim ", d, " listed twice");
    if (ndim > 0) is_reduced[w] = true;
  }
  ReductionPlan plan;
  std::vector<int64_t> order;
  int64_t kept_numel = 1;
  for (int64_t d = 0; d < ndim; ++d) {
    if (is_reduced[d]) continue;
    order.push_back(d);
    kept_numel *= x.size(d);
  }
  for (int64_t d = 0; d < ndim; ++d) {
    if (!is_reduced[d]) continue;
    order.push_back(d);
    plan.reduced *= x.size(d);
  }
  for (int64_t d = 0; d < ndim; ++d) {
    plan.kept.push_back(is_reduced[d] ? 1 : x.size(d));
    if (!is_reduced[d]) plan.squeezed.push_back(x.size(d));
  }
  plan.rows = reshape(permute(x, order).contiguous(), {kept_numel, plan.reduced});
  return plan;
}
}  // namespace

Tensor reduce(ReduceOp op, const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
  const char* name = reduce_op_name(op);
  check_floating(name, x);
  ReductionPlan plan = plan_reduction(x, std::move(dims), name);
  const Shape& out_shape = keepdim ? plan.kept : plan.squeezed;
  const DType out_dtype = op == ReduceOp::ArgMax ? DType::Int64 : x.dtype();
  if (plan.reduced == 0) {
    MMS_CHECK(op == ReduceOp::Sum || op == ReduceOp::LogSumExp, name,
              ": cannot reduce over an empty dimension of shape ", shape_str(x.shape()));
    const double empty_value = op == ReduceOp::Sum ? 0.0 : -std::numeric_limits<double>::infinity();
    return full(out_shape, empty_value, out_dtype, x.device());
  }
  Tensor out = empty({plan.rows.size(0)}, out_dtype, x.device());
  if (out.numel() > 0) backend_for(x.device()).reduce_last(op, plan.rows, out);
  return reshape(out, out_shape);
}

Tensor mean(const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
  Tensor total = sum(x, dims, keepdim);
  const int64_t count = x.numel() / std::max<int64_t>(total.numel(), 1);
  MMS_CHECK(count > 0 || x.numel() == 0, "mean: internal count error");
  return mul_scalar(total, count > 0 ? 1.0 / static_cast<double>(count)
                                     : std::numeric_limits<double>::quiet_NaN());
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  return reduce(ReduceOp::ArgMax, x, {dim}, keepdim);
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  const int64_t lead = x.dim() - static_cast<int64_t>(shape.size());
  MMS_CHECK(lead >= 0, "sum_to: cannot sum ", shape_str(x.shape()), " down to ", shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (d < lead) {
      dims.push_back(d);
    } else if (shape[d - lead] == 1 && x.size(d) != 1) {
      dims.push_back(d);
    } else {
      MMS_CHECK(shape[d - lead] == x.size(d), "sum_to: cannot sum ", shape_str(x.shape()),
                " down to ", shape_str(shape));
    }
  }
  if (dims.empty()) return reshape(x, shape);
  return reshape(sum(x, dims, true), shape);
}

}  // namespace mms::ops
