// An op-level profile of a stretch of engine work: which ops (and, on a GPU, which
// kernels) a training step's time goes to (bench/step --profile prints it).
//
//   profile_begin(device);
//   ... one training step ...
//   ProfileReport report = profile_end();
//   std::cout << format_profile(report, 25);
//
// The engine marks the end of each op's forward (autograd's record()), each backward
// node and the optimizer; every stretch of time between two marks is charged to the op
// whose mark closes it, so work done by raw ops outside autograd (masks, loss
// bookkeeping) is charged to the next marked op.
// - CUDA (cuda/profile.h): an event on the stream after every kernel launch and at every
//   mark, so GPU time is charged to ops and to kernel launch sites.
// - CPU: the host's steady clock at every mark. CPU ops run to completion before they
//   return, so the time between marks is the op's own time (dispatch and autograd
//   bookkeeping included); there is no kernel table.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tensor/device.h"

namespace mms {

struct ProfileRow {
  std::string label;
  int64_t calls = 0;
  double ms = 0.0;
};

struct ProfileReport {
  double total_ms = 0.0;            // time from begin to the last mark
  std::vector<ProfileRow> ops;      // most time first; sums to total_ms
  std::vector<ProfileRow> kernels;  // CUDA: by launch site, most time first; sums to total_ms
  bool host_clock = false;          // true for a CPU profile (wall time, no kernel table)
};

void profile_begin(Device device);
ProfileReport profile_end();
// Closes an open profile without a report (no-op when none is open).
void profile_discard();

// A profile for the scope's lifetime: end() gives the report; leaving the scope without
// it (an exception in the profiled work) discards the recording, so nothing stays open.
class ProfileScope {
 public:
  explicit ProfileScope(Device device) { profile_begin(device); }
  ~ProfileScope() { profile_discard(); }
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;
  ProfileReport end() { return profile_end(); }
};

namespace detail {
extern bool profile_open;
void profile_mark_op_slow(const char* op, const char* phase);
// The CUDA half (tensor/cuda_glue/cuda_profile.cpp; CUDA builds only).
void cuda_profile_begin();
ProfileReport cuda_profile_end();
void cuda_profile_discard();
void cuda_profile_mark(const std::string& label);
}  // namespace detail

// Marks the end of an op's queued work ("layer_norm", phase "backward" -> "layer_norm
// backward"); a flag test when no profile is open.
inline void profile_mark_op(const char* op, const char* phase = nullptr) {
  if (detail::profile_open) detail::profile_mark_op_slow(op, phase);
}

// Two tables (ops, then kernels when there are any), the `top` rows of each, with ms,
// share and calls.
std::string format_profile(const ProfileReport& report, size_t top);

}  // namespace mms
