// Raw views: new shape/strides/offset over the same storage, no copy, no gradient.
// The differentiable versions with the same names live in autograd/api.h.
#pragma once

#include <vector>

#include "tensor/tensor.h"

namespace mms::ops {

// Normalises a possibly negative dim against `ndim`; throws naming `op` when out of range.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);

// A view with the new shape when the strides allow it, else a contiguous copy.
// One entry may be -1 (inferred).
Tensor reshape(const Tensor& x, Shape shape);
// Like reshape but never copies: throws when the strides do not allow a view.
Tensor view(const Tensor& x, Shape shape);
Tensor flatten(const Tensor& x, int64_t start_dim = 0, int64_t end_dim = -1);
Tensor permute(const Tensor& x, const std::vector<int64_t>& order);
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1);
// Elements [start, start + length) along dim.
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
// Index `index` along dim, removing that dim.
Tensor select(const Tensor& x, int64_t dim, int64_t index);
// Broadcast to `shape` (stride 0 on new or size-1 dims); -1 keeps a dim.
Tensor expand(const Tensor& x, const Shape& shape);
Tensor squeeze(const Tensor& x);               // all size-1 dims
Tensor squeeze(const Tensor& x, int64_t dim);  // only that one (must be size 1)
Tensor unsqueeze(const Tensor& x, int64_t dim);

// NumPy broadcasting of two shapes; throws naming `op` and both shapes.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace mms::ops
