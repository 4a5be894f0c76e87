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
#include <string>
#include <utility>
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
// the element runs only on failure. While a DeferFiniteChecks is alive on this thread
// the scalar is not read: the check is queued (see below).
void check_finite(const char* loss, const char* what, const Tensor& x, const Tensor& keep = Tensor());

// A finiteness check whose device-side probe (0 when x is finite where kept, NaN
// otherwise) has been computed but not yet read.
struct PendingFiniteCheck {
  std::string loss, what;
  Tensor x, keep;
  Tensor probe;  // scalar on x's device
};

// Reading a probe makes the host wait for the device: in the middle of a training step
// that wait stops the host from queueing the next kernels. While one of these is alive
// on a thread, check_finite queues its check here instead; the owner reads all probes
// later in one copy (compute_objective with HostReads::Deferred does) and calls
// raise_if_non_finite for the first one that failed, which throws the same error the
// immediate check would have.
class DeferFiniteChecks {
 public:
  DeferFiniteChecks();
  ~DeferFiniteChecks();
  DeferFiniteChecks(const DeferFiniteChecks&) = delete;
  DeferFiniteChecks& operator=(const DeferFiniteChecks&) = delete;
  void queue(PendingFiniteCheck check) { queued_.push_back(std::move(check)); }
  // The checks queued so far (and forgets them).
  std::vector<PendingFiniteCheck> take();

 private:
  std::vector<PendingFiniteCheck> queued_;
  DeferFiniteChecks* outer_;
};

// Locates the first non-finite kept element of the check's tensor on the host and
// throws the error check_finite would have thrown.
[[noreturn]] void raise_non_finite(const PendingFiniteCheck& check);

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
