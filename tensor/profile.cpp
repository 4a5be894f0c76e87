// The device-independent half of tensor/profile.h: the flag, the report's text, and the
// CPU-only build's refusal. The recording itself is tensor/cuda_glue/cuda_profile.cpp.
#include "tensor/profile.h"

#include <cstdio>

#include "tensor/error.h"

namespace mms {

namespace detail {
bool profile_open = false;
}  // namespace detail

#ifndef MMS_WITH_CUDA
void profile_begin(Device device) {
  fail("profile_begin(", device.str(), "): the profiler times CUDA streams, and this build of mmscale has no "
       "CUDA support");
}
ProfileReport profile_end() { fail("profile_end: no profile is open (this build has no CUDA support)"); }
void profile_discard() {}
void detail::profile_mark_op_slow(const char*, const char*) {}
#endif

namespace {
void append_table(std::string& out, const char* title, const std::vector<ProfileRow>& rows, double total_ms,
                  size_t top) {
  char line[256];
  std::snprintf(line, sizeof line, "%-48s %10s %7s %8s\n", title, "ms", "share", "calls");
  out += line;
  double shown = 0.0;
  for (size_t i = 0; i < rows.size() && i < top; ++i) {
    const ProfileRow& r = rows[i];
    std::snprintf(line, sizeof line, "  %-46.46s %10.3f %6.1f%% %8lld\n", r.label.c_str(), r.ms,
                  total_ms > 0 ? 100.0 * r.ms / total_ms : 0.0, static_cast<long long>(r.calls));
    out += line;
    shown += r.ms;
  }
  if (rows.size() > top) {
    char more[32];
    std::snprintf(more, sizeof more, "(%zu more)", rows.size() - top);
    std::snprintf(line, sizeof line, "  %-46s %10.3f %6.1f%%\n", more, total_ms - shown,
                  total_ms > 0 ? 100.0 * (total_ms - shown) / total_ms : 0.0);
    out += line;
  }
}
}  // namespace

std::string format_profile(const ProfileReport& report, size_t top) {
  std::string out;
  char line[128];
  std::snprintf(line, sizeof line, "GPU time profiled: %.3f ms\n", report.total_ms);
  out += line;
  append_table(out, "op (forward, backward node, optimizer)", report.ops, report.total_ms, top);
  append_table(out, "kernel launch site (function:line)", report.kernels, report.total_ms, top);
  return out;
}

}  // namespace mms
