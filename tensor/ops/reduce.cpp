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

namespace {
// Sum over the leading `lead` dims of a contiguous tensor as column sums of [M, N]: the
// device's own kernel (Backend::sum_rows) or one GEMV, [1, M] ones @ [M, N] -> [1, N].
// The generic path would first transpose x so the reduced dims come last (a full copy);
// this reads x once, and it is the shape of every bias gradient (sum of dy over all
// rows) and of most broadcast gradients.
bool sums_leading_dims(const Tensor& x, const std::vector<int64_t>& dims, int64_t& lead) {
  if (dims.empty() || !x.is_contiguous()) return false;
  std::vector<bool> reduced(x.dim(), false);
  for (int64_t d : dims) reduced[wrap_dim(d, x.dim(), "sum")] = true;
  lead = 0;
  while (lead < x.dim() && reduced[lead]) ++lead;
  for (int64_t d = lead; d < x.dim(); ++d)
    if (reduced[d]) return false;
  return lead > 0 && lead < x.dim();
}

Tensor sum_leading_dims(const Tensor& x, int64_t lead, bool keepdim) {
  int64_t m = 1, n = 1;
  for (int64_t d = 0; d < lead; ++d) m *= x.size(d);
  for (int64_t d = lead; d < x.dim(); ++d) n *= x.size(d);  // not numel / m: m may be 0
  Tensor out = empty({1, 1, n}, x.dtype(), x.device());
  if (m == 0) {
    fill_(out, 0.0);
  } else {
    Backend& backend = backend_for(x.device());
    Tensor out_row = reshape(out, {n});
    if (!backend.sum_rows(reshape(x, {m, n}), out_row)) {
      Tensor ones_row = full({1, 1, m}, 1.0, x.dtype(), x.device());
      backend.bmm(ones_row, reshape(x, {1, m, n}), out, false, false, 1.0, 0.0);
    }
  }
  Shape shape;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (d >= lead) shape.push_back(x.size(d));
    else if (keepdim) shape.push_back(1);
  return reshape(out, shape);
}
}  // namespace

Tensor reduce(ReduceOp op, const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
  const char* name = reduce_op_name(op);
  check_floating(name, x);
  int64_t lead = 0;
  if (op == ReduceOp::Sum && sums_leading_dims(x, dims, lead)) return sum_leading_dims(x, lead, keepdim);
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
