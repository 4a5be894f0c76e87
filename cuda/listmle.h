// ListMLE (Xia et al. 2008), the listwise loss of MM-SCALE: for one list with items in
// gold order pi (best first) and model scores s,
//   loss = sum_i [ logsumexp_{j >= i} s_pi(j) - s_pi(i) ]
//   d loss / d s_pi(k) = sum_{i <= k} exp(s_pi(k) - lse_i) - 1,  lse_i = logsumexp_{j>=i} s_pi(j).
#pragma once

#include <cstdint>

#include "cuda/common.h"

namespace mms::cuda {

// scores, grad_scores [lists, width] float; order [lists, width] int64 (item indices,
// best first; the first lengths[b] valid and distinct: the glue validates); lengths
// [lists] int64; loss [lists]. Lists shorter than 2 items get zero loss and gradient;
// items not named in the first lengths[b] entries get zero gradient.
void listmle_f32(const float* scores, const int64_t* order, const int64_t* lengths, int64_t lists,
                 int64_t width, float* loss, float* grad_scores, cudaStream_t stream);

}  // namespace mms::cuda
