// ListMLE (Xia et al., 2008): the listwise objective of MM-SCALE. The negative
// log-likelihood of the gold ranking under the Plackett-Luce model of the scores.
//
// For one list whose valid items, ordered by gold rating descending, have scores
// s_0 .. s_{n-1}:
//   loss = sum_{k<n} [ LSE_k - s_k ],  LSE_k = log sum_{j>=k} exp(s_j)
//   d loss / d s_m = sum_{k<=m} exp(s_m - LSE_k) - 1       (sums to 0 over the list)
// The fused kernel (Backend::listmle: tensor/cpu/listmle.cpp, cuda/) computes both
// exactly and stably, with no epsilon; this file builds the gold order on the host and
// wraps the kernel in an autograd Node.
//
// Batch reduction: the mean of the per-list losses over the lists with at least 2 valid
// items (a list of 0 or 1 item has no ranking to learn). With no such list the loss is
// 0 and its gradient is 0 (never a division by zero).
//
// Ties in gold: items with equal gold ratings are ordered by a seeded shuffle. Item j of
// list b (row b of the batch) gets the key u32 = Philox-4x32-10(seed = tie_seed,
// stream position b*K + j) (cuda/philox.h); equal-gold items are ordered by key
// ascending, then by index (should two keys collide). The order is therefore a pure
// function of (gold, valid, tie_seed, position in the batch): reproducible, and a new
// seed per step gives a fresh shuffle so no tie order is learnt systematically.
//
// Non-finite scores at valid positions raise an mms::Error naming "listmle_loss"
// (see losses/loss_utils.h); gold ratings at valid positions must be finite too.
#pragma once

#include <cstdint>
#include <vector>

#include "autograd/api.h"

namespace mms::losses {

// The host-side gold order of a batch: order[b*K + k] is the item at rank k of list b
// (first lengths[b] entries valid, the rest padded with the invalid items' indices).
struct ListOrder {
  std::vector<int64_t> order;    // [B*K]
  std::vector<int64_t> lengths;  // [B]
  int64_t ranked_lists = 0;      // lists with lengths[b] >= 2
};

// gold, valid: row-major [lists, width]. Throws on a non-finite gold at a valid item.
ListOrder listmle_order(const std::vector<double>& gold, const std::vector<uint8_t>& valid,
                        int64_t lists, int64_t width, uint64_t tie_seed);

// scores [B, K] float32/float64 on any device (the differentiable input); gold [B, K]
// any floating dtype, any device (no gradient); valid [B, K] Bool/UInt8, or undefined
// for all valid. Returns a scalar of scores' dtype on scores' device.
Tensor listmle_loss(const Tensor& scores, const Tensor& gold, const Tensor& valid,
                    uint64_t tie_seed);

}  // namespace mms::losses
