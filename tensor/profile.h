// An op-level GPU profile of a stretch of engine work: which ops and which kernels a
// training step's GPU time goes to (bench/step --profile prints it).
//
//   profile_begin(Device::cuda());
//   ... one training step ...
//   ProfileReport report = profile_end();
//   std::cout << format_profile(report, 25);
//
// How it measures (cuda/profile.h): an event on the stream after every kernel launch and
// at every op boundary; the engine marks each op's forward (autograd's record()), each
// backward node and the optimizer, so every stretch of GPU time is charged to the op
// that queued it. Work queued by raw ops outside autograd (masks, loss bookkeeping) is
// charged to the next marked op. CUDA only; a CPU build or a CPU device is an error.
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
  double total_ms = 0.0;            // GPU time from begin to the last mark
  std::vector<ProfileRow> ops;      // most time first; sums to total_ms
  std::vector<ProfileRow> kernels;  // by launch site, most time first; sums to total_ms
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
}  // namespace detail

// Marks the end of an op's queued work ("layer_norm", phase "backward" -> "layer_norm
// backward"); a flag test when no profile is open.
inline void profile_mark_op(const char* op, const char* phase = nullptr) {
  if (detail::profile_open) detail::profile_mark_op_slow(op, phase);
}

// Two tables (ops, then kernels), the `top` rows of each, with ms, share and calls.
std::string format_profile(const ProfileReport& report, size_t top);

}  // namespace mms
