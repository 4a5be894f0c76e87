// Dispatch for indexing and joining: index_select/index_add move the indexed dim to
// the front and treat the rest as rows; gather/scatter_add move it to the back.
#include "tensor/ops.h"

namespace mms::ops {

namespace {
void check_index(const char* op, const Tensor& index, const Tensor& x) {
  MMS_CHECK(index.dtype() == DType::Int64, op, ": index must be int64, got ",
            dtype_name(index.dtype()), " ", shape_str(index.shape()));
  check_same_device(op, index, x);
}

// [*, size(dim), *] -> dim moved first
Tensor dim_first(const Tensor& x, int64_t dim) { return dim == 0 ? x : transpose(x, 0, dim); }
}  // namespace

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  check_index("index_select", index, x);
  MMS_CHECK(index.dim() <= 1, "index_select: index must be 1-D, got ", shape_str(index.shape()));
  MMS_CHECK(x.dim() >= 1, "index_select: input must have at least 1 dim");
  dim = wrap_dim(dim, x.dim(), "index_select");
  Tensor moved = dim_first(x, dim);
  const int64_t n = moved.size(0);
  const int64_t row = n == 0 ? 0 : moved.numel() / n;
  const int64_t count = index.numel();
  Tensor table = reshape(moved.contiguous(), {n, row});
  Tensor out = empty({count, row}, x.dtype(), x.device());
  if (count > 0) {
    MMS_CHECK(n > 0, "index_select: cannot index an empty dim ", dim, " of ", shape_str(x.shape()));
    backend_for(x.device()).index_select_rows(table, reshape(index.contiguous(), {count}), out);
  }
  Shape shape = moved.shape();
  shape[0] = count;
  Tensor result = reshape(out, shape);
  return dim == 0 ? result : transpose(result, 0, dim);
}

Tensor index_add(const Shape& shape, int64_t dim, const Tensor& index, const Tensor& grad) {
  check_index("index_add", index, grad);
  dim = wrap_dim(dim, static_cast<int64_t>(shape.size()), "index_add");
  Shape moved_shape = shape;
  std::swap(moved_shape[0], moved_shape[dim]);
  const int64_t n = moved_shape[0];
  const int64_t row = n == 0 ? 0 : shape_numel(shape) / n;
  Tensor table = zeros({n, row}, grad.dtype(), grad.device());
  const int64_t count = index.numel();
  if (count > 0 && row > 0) {
    Tensor rows = reshape(dim_first(grad, dim).contiguous(), {count, row});
    backend_for(grad.device()).index_add_rows(rows, reshape(index.contiguous(), {count}), table);
  }
  Tensor result = reshape(table, moved_shape);
  return dim == 0 ? result : transpose(result, 0, dim).contiguous();
}

namespace {
struct LastDimView {
  Tensor rows;  // [M, N]
  Shape moved_shape;
};
LastDimView dim_last_rows(const Tensor& x, int64_t dim) {
  Tensor moved = dim == x.dim() - 1 ? x : transpose(x, dim, -1);
  const int64_t n = moved.size(-1);
  return {reshape(moved.contiguous(), {n == 0 ? 0 : moved.numel() / n, n}), moved.shape()};
}
void check_gather_shapes(const char* op, const Shape& x_shape, const Tensor& index, int64_t dim) {
  MMS_CHECK(static_cast<int64_t>(x_shape.size()) == index.dim(), op, ": index ",
            shape_str(index.shape()), " must have the same rank as the input ", shape_str(x_shape));
  for (int64_t d = 0; d < index.dim(); ++d)
    MMS_CHECK(d == dim || index.size(d) == x_shape[d], op, ": index ", shape_str(index.shape()),
              " and input ", shape_str(x_shape), " differ outside dim ", dim);
}
}  // namespace

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  check_index("gather", index, x);
  dim = wrap_dim(dim, x.dim(), "gather");
  check_gather_shapes("gather", x.shape(), index, dim);
  LastDimView xv = dim_last_rows(x, dim);
  LastDimView iv = dim_last_rows(index, dim);
  Tensor out = empty(iv.rows.shape(), x.dtype(), x.device());
  if (out.numel() > 0) backend_for(x.device()).gather_last(xv.rows, iv.rows, out);
  Tensor result = reshape(out, iv.moved_shape);
  return dim == x.dim() - 1 ? result : transpose(result, dim, -1);
}

Tensor scatter_add(const Shape& shape, int64_t dim, const Tensor& index, const Tensor& grad) {
  check_index("scatter_add", index, grad);
  dim = wrap_dim(dim, static_cast<int64_t>(shape.size()), "scatter_add");
  check_gather_shapes("scatter_add", shape, index, dim);
  Tensor base = zeros(shape, grad.dtype(), grad.device());
  LastDimView bv = dim_last_rows(base, dim);  // contiguous [M, N] (a copy when dim moved)
  LastDimView iv = dim_last_rows(index, dim);
  LastDimView gv = dim_last_rows(grad, dim);
  if (gv.rows.numel() > 0) backend_for(grad.device()).scatter_add_last(gv.rows, iv.rows, bv.rows);
  Tensor result = reshape(bv.rows, bv.moved_shape);
  return dim == static_cast<int64_t>(shape.size()) - 1 ? result : transpose(result, dim, -1).contiguous();
}

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  MMS_CHECK(!tensors.empty(), "cat: needs at least one tensor");
  const Tensor& first = tensors[0];
  MMS_CHECK(first.dim() >= 1, "cat: zero-dimensional tensors cannot be concatenated");
  dim = wrap_dim(dim, first.dim(), "cat");
  Shape shape = first.shape();
  shape[dim] = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    check_same_device("cat", first, t);
    check_same_dtype("cat", first, t);
    MMS_CHECK(t.dim() == first.dim(), "cat: tensor ", i, " has shape ", shape_str(t.shape()),
              " but tensor 0 has ", shape_str(first.shape()));
    for (int64_t d = 0; d < t.dim(); ++d)
      MMS_CHECK(d == dim || t.size(d) == first.size(d), "cat: tensor ", i, " has shape ",
                shape_str(t.shape()), " but tensor 0 has ", shape_str(first.shape()),
                " (they may differ only in dim ", dim, ")");
    shape[dim] += t.size(dim);
  }
  Tensor out = empty(shape, first.dtype(), first.device());
  // Contiguous inputs along dim 0 (or a dim with only size-1 dims before it) lie end to
  // end in the output: the backend may write them in one call (CUDA: one launch for the
  // whole cat; training stacks every attention layer's q, k, v weights this way).
  bool end_to_end = true;
  for (int64_t d = 0; d < dim; ++d) end_to_end = end_to_end && shape[d] == 1;
  for (const Tensor& t : tensors) end_to_end = end_to_end && t.is_contiguous();
  if (end_to_end && backend_for(out.device()).concat_contiguous(tensors, out)) return out;
  int64_t start = 0;
  for (const Tensor& t : tensors) {
    Tensor slot = narrow(out, dim, start, t.size(dim));
    copy_(slot, t);
    start += t.size(dim);
  }
  return out;
}

int64_t check_stack(const std::vector<Tensor>& tensors, int64_t dim) {
  MMS_CHECK(!tensors.empty(), "stack: needs at least one tensor");
  for (size_t i = 0; i < tensors.size(); ++i)
    MMS_CHECK(tensors[i].shape() == tensors[0].shape(), "stack: tensor ", i, " has shape ",
              shape_str(tensors[i].shape()), " but tensor 0 has ", shape_str(tensors[0].shape()));
  return wrap_dim(dim, tensors[0].dim() + 1, "stack");
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  dim = check_stack(tensors, dim);
  std::vector<Tensor> expanded;
  for (const Tensor& t : tensors) expanded.push_back(unsqueeze(t, dim));
  return cat(expanded, dim);
}

std::vector<std::pair<int64_t, int64_t>> split_ranges(int64_t size, int64_t split_size) {
  MMS_CHECK(split_size > 0, "split: split_size must be positive, got ", split_size);
  std::vector<std::pair<int64_t, int64_t>> ranges;
  for (int64_t start = 0; start < size; start += split_size)
    ranges.push_back({start, std::min(split_size, size - start)});
  if (ranges.empty()) ranges.push_back({0, 0});
  return ranges;
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  dim = wrap_dim(dim, x.dim(), "split");
  std::vector<Tensor> parts;
  for (const auto& [start, length] : split_ranges(x.size(dim), split_size)) parts.push_back(narrow(x, dim, start, length));
  return parts;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  MMS_CHECK(chunks > 0, "chunk: chunks must be positive, got ", chunks);
  dim = wrap_dim(dim, x.dim(), "chunk");
  const int64_t size = (x.size(dim) + chunks - 1) / chunks;
  return split(x, std::max<int64_t>(size, 1), dim);
}

Tensor repeat_interleave(const Tensor& x, int64_t repeats, int64_t dim) {
  MMS_CHECK(repeats >= 0, "repeat_interleave: repeats must be >= 0, got ", repeats);
  dim = wrap_dim(dim, x.dim(), "repeat_interleave");
  // [.., n, ..] -> [.., n, 1, ..] -> expand [.., n, r, ..] -> [.., n*r, ..]
  Tensor spread = unsqueeze(x, dim + 1);
  Shape shape = spread.shape();
  shape[dim + 1] = repeats;
  Shape merged = x.shape();
  merged[dim] *= repeats;
  return reshape(expand(spread, shape).contiguous(), merged);
}

}  // namespace mms::ops
