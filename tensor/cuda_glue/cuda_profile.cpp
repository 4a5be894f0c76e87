// tensor/profile.h's CUDA half, on the timeline profiler (cuda/profile.h); tensor/profile.cpp
// dispatches here for a CUDA device.
#include "cuda/profile.h"

#include <string>

#include "tensor/backend.h"
#include "tensor/error.h"
#include "tensor/profile.h"

namespace mms {

namespace {
std::vector<ProfileRow> rows_of(const std::vector<cuda::profile::Row>& rows) {
  std::vector<ProfileRow> out;
  out.reserve(rows.size());
  for (const auto& r : rows) out.push_back({r.label, r.calls, r.ms});
  return out;
}
}  // namespace

void detail::cuda_profile_begin() {
  cuda_backend();  // the device exists, and CUDA errors become mms::Error
  cuda::profile::begin();
}

ProfileReport detail::cuda_profile_end() {
  const cuda::profile::Report report = cuda::profile::end();
  return {report.total_ms, rows_of(report.ops), rows_of(report.kernels), false};
}

void detail::cuda_profile_discard() { cuda::profile::discard(); }

void detail::cuda_profile_mark(const std::string& label) { cuda::profile::mark_op(label); }

}  // namespace mms
