// Helpers shared by the loss functions in losses/: validity masks, the finite-input
// check, and the "nothing to average" zero loss.
//
// Policy on non-finite inputs (every loss follows it): a NaN or +/-inf score, logit or
// target at a position that takes part in the loss is rejected with an mms::Error that
// names the loss, the tensor and the first offending element. Positions excluded by a
// mask (padding) may hold anything, they are never read into the arithmetic. A loss
// never returns a silently wrong number.
#pragma once

#include <cstdint>
#include <vector>

#include "autograd/api.h"

namespace mms::losses {

// Gold ratings at or above this are "acceptable" (the binary label of MM-SCALE).
inline constexpr double kAcceptableThreshold = 2.5;

// The mask as host bytes (1 = take part). An undefined `valid` means all valid; otherwise
// it must be Bool or UInt8 with exactly `shape`.
std::vector<uint8_t> host_mask(const char* loss, const Tensor& valid, const Shape& shape);

// All values of `x` as host doubles (copied from the device when needed).
std::vector<double> host_values(const Tensor& x);

// Throws mms::Error "<loss>: <what> has a non-finite value (nan) at [1, 2]" when x holds
// NaN or +/-inf where `keep` (UInt8/Bool of x's shape, or undefined = everywhere) is
// nonzero. Cost: one device reduction and one scalar read; the host scan that locates
// the element runs only on failure.
void check_finite(const char* loss, const char* what, const Tensor& x, const Tensor& keep = Tensor());

// A float32/float64 check naming the loss.
void check_floating_input(const char* loss, const char* what, const Tensor& x);
// Scores and gold ratings of a batch of lists: both floating, scores [B, K], gold the
// same shape. Names the op and the shapes when not.
void check_list_inputs(const char* op, const Tensor& scores, const Tensor& gold);

// x with every position where keep == 0 replaced by 0 (raw op, no gradient), so padding
// can hold NaN or garbage without reaching the arithmetic.
Tensor zero_outside(const Tensor& x, const Tensor& keep);

// A scalar 0 of x's dtype and device, recorded as a differentiable function of x with
// a zero gradient: what a loss returns when there is nothing to average (documented
// per loss), so backward() still works and leaves zeros.
Tensor zero_loss(const char* op, const Tensor& x);

}  // namespace mms::losses
