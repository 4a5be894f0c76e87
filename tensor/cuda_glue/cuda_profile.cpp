// tensor/profile.h on the CUDA timeline profiler (cuda/profile.h).
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

void profile_begin(Device device) {
  MMS_CHECK(device.is_cuda(), "profile_begin(", device.str(), "): the profiler times CUDA streams; "
                              "profile a CUDA device");
  MMS_CHECK(!detail::profile_open, "profile_begin: a profile is already open");
  cuda_backend();  // the device exists, and CUDA errors become mms::Error
  cuda::profile::begin();
  detail::profile_open = true;
}

ProfileReport profile_end() {
  MMS_CHECK(detail::profile_open, "profile_end: no profile is open (call profile_begin first)");
  detail::profile_open = false;
  const cuda::profile::Report report = cuda::profile::end();
  return {report.total_ms, rows_of(report.ops), rows_of(report.kernels)};
}

void profile_discard() {
  if (!detail::profile_open) return;
  detail::profile_open = false;
  cuda::profile::discard();
}

void detail::profile_mark_op_slow(const char* op, const char* phase) {
  cuda::profile::mark_op(phase == nullptr ? std::string(op) : std::string(op) + " " + phase);
}

}  // namespace mms
