// ListMLE: host-side gold ordering + the fused kernel + the autograd Node. The formula
// and the tie rule are documented in losses/listmle.h.
#include "losses/listmle.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "cuda/philox.h"
#include "losses/loss_utils.h"

namespace mms::losses {

ListOrder listmle_order(const std::vector<double>& gold, const std::vector<uint8_t>& valid,
                        int64_t lists, int64_t width, uint64_t tie_seed) {
  const size_t total = static_cast<size_t>(lists * width);
  MMS_CHECK(gold.size() == total && valid.size() == total, "listmle_loss: gold/valid hold ",
            gold.size(), "/", valid.size(), " values for ", lists, " lists of ", width);
  ListOrder result;
  result.order.resize(total);
  result.lengths.resize(static_cast<size_t>(lists));
  std::vector<int64_t> items;
  std::vector<uint32_t> keys(static_cast<size_t>(width));
  for (int64_t b = 0; b < lists; ++b) {
    const double* g = gold.data() + b * width;
    const uint8_t* v = valid.data() + b * width;
    items.clear();
    for (int64_t j = 0; j < width; ++j) {
      if (!v[j]) continue;
      MMS_CHECK(std::isfinite(g[j]), "listmle_loss: gold rating of list ", b, " item ", j, " is ",
                g[j], "; gold ratings of valid items must be finite");
      items.push_back(j);
      keys[j] = mms_philox_u32(tie_seed, static_cast<uint64_t>(b * width + j));
    }
    std::sort(items.begin(), items.end(), [&](int64_t x, int64_t y) {
      if (g[x] != g[y]) return g[x] > g[y];
      if (keys[x] != keys[y]) return keys[x] < keys[y];
      return x < y;
    });
    const int64_t n = static_cast<int64_t>(items.size());
    result.lengths[b] = n;
    if (n >= 2) ++result.ranked_lists;
    int64_t* row = result.order.data() + b * width;
    std::copy(items.begin(), items.end(), row);
    // Pad with the invalid items so each row stays a permutation (the kernel reads only
    // the first n entries, but a permutation is easier to inspect).
    int64_t k = n;
    for (int64_t j = 0; j < width; ++j)
      if (!v[j]) row[k++] = j;
  }
  return result;
}

// d loss / d scores = upstream * grad_b / ranked_lists, where grad_b is the kernel's
// per-list closed form (zero at invalid items and in lists of < 2 items).
Tensor listmle_loss(const Tensor& scores, const Tensor& gold, const Tensor& valid,
                    uint64_t tie_seed) {
  const char* op = "listmle_loss";
  check_list_inputs(op, scores, gold);
  const int64_t lists = scores.size(0), width = scores.size(1);
  std::vector<uint8_t> mask = host_mask(op, valid, scores.shape());
  ListOrder order = listmle_order(host_values(gold), mask, lists, width, tie_seed);
  if (order.ranked_lists == 0) return zero_loss(op, scores);

  const Device device = scores.device();
  Tensor keep = valid.defined() ? from_vector<uint8_t>(mask, scores.shape()).to(device) : Tensor();
  check_finite(op, "scores", scores, keep);

  Tensor order_t = from_vector<int64_t>(order.order, {lists, width}).to(device);
  Tensor lengths_t = from_vector<int64_t>(order.lengths, {lists}).to(device);
  Tensor contiguous_scores = scores.contiguous();
  Tensor per_list = empty({lists}, scores.dtype(), device);
  Tensor grad = empty({lists, width}, scores.dtype(), device);
  backend_for(device).listmle(contiguous_scores, order_t, lengths_t, per_list, grad);

  const double inverse_count = 1.0 / static_cast<double>(order.ranked_lists);
  Tensor loss = ops::mul_scalar(ops::sum(per_list), inverse_count);
  return record(op, loss, {scores}, [grad, inverse_count](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{ops::mul(grad, ops::mul_scalar(g, inverse_count))};
  });
}

}  // namespace mms::losses
