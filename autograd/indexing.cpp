// Indexing and joining ops. Gathers scatter their gradient back (index_add,
// scatter_add); joins slice it apart.
#include "autograd/api.h"

namespace mms {

namespace {
using Grads = std::vector<Tensor>;
}

// d embedding: rows of g added into a zero table at the ids (repeated ids accumulate)
Tensor embedding(const Tensor& weight, const Tensor& ids) {
  MMS_CHECK(weight.dim() == 2, "embedding: weight must be [num_embeddings, dim], got ",
            shape_str(weight.shape()));
  Tensor flat_ids = ops::reshape(ids, {-1});
  Tensor rows = ops::index_select(weight, 0, flat_ids);
  Shape out_shape = ids.shape();
  out_shape.push_back(weight.size(1));
  Tensor y = ops::reshape(rows, out_shape);
  Shape table = weight.shape();
  return record("embedding", y, {weight}, [flat_ids, table](const Tensor& g, const std::vector<bool>&) {
    return Grads{ops::index_add(table, 0, flat_ids, ops::reshape(g, {-1, table[1]}))};
  });
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  Shape shape = x.shape();
  Tensor is = saved(index);
  return record("index_select", ops::index_select(x, dim, index), {x}, [shape, dim, is](const Tensor& g, const std::vector<bool>&) {
    return Grads{ops::index_add(shape, dim, is, g)};
  });
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  Shape shape = x.shape();
  Tensor is = saved(index);
  return record("gather", ops::gather(x, dim, index), {x}, [shape, dim, is](const Tensor& g, const std::vector<bool>&) {
    return Grads{ops::scatter_add(shape, dim, is, g)};
  });
}

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  Tensor y = ops::cat(tensors, dim);
  const int64_t d = ops::wrap_dim(dim, y.dim(), "cat");
  std::vector<int64_t> sizes;
  for (const Tensor& t : tensors) sizes.push_back(t.size(d));
  return record("cat", y, tensors, [sizes, d](const Tensor& g, const std::vector<bool>& needs) {
    Grads grads(sizes.size());
    int64_t start = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (needs[i]) grads[i] = ops::narrow(g, d, start, sizes[i]);
      start += sizes[i];
    }
    return grads;
  });
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  const int64_t d = ops::check_stack(tensors, dim);
  std::vector<Tensor> expanded;
  for (const Tensor& t : tensors) expanded.push_back(unsqueeze(t, d));
  return cat(expanded, d);
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  const int64_t d = ops::wrap_dim(dim, x.dim(), "split");
  std::vector<Tensor> parts;
  for (const auto& [start, length] : ops::split_ranges(x.size(d), split_size)) parts.push_back(narrow(x, d, start, length));
  return parts;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  MMS_CHECK(chunks > 0, "chunk: chunks must be positive, got ", chunks);
  const int64_t d = ops::wrap_dim(dim, x.dim(), "chunk");
  const int64_t size = (x.size(d) + chunks - 1) / chunks;
  return split(x, std::max<int64_t>(size, 1), d);
}

// d repeat_interleave: view g as [.., n, repeats, ..] and sum the repeats
Tensor repeat_interleave(const Tensor& x, int64_t repeats, int64_t dim) {
  const int64_t d = ops::wrap_dim(dim, x.dim(), "repeat_interleave");
  Shape spread = x.shape();
  spread.insert(spread.begin() + d + 1, repeats);
  return record("repeat_interleave", ops::repeat_interleave(x, repeats, d), {x},
                [spread, d](const Tensor& g, const std::vector<bool>&) {
                  return Grads{ops::sum(ops::reshape(g, spread), {d + 1})};
                });
}

}  // namespace mms
