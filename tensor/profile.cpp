// tensor/profile.h: one profile at a time, on the host clock for the CPU or the CUDA
// timeline (tensor/cuda_glue/cuda_profile.cpp), and the report's text.
#include "tensor/profile.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <unordered_map>

#include "tensor/error.h"

namespace mms {

namespace detail {
bool profile_open = false;
}  // namespace detail

namespace {

using Clock = std::chrono::steady_clock;

// The CPU profile: the clock at the last mark, and the time charged to each label.
struct HostProfile {
  bool active = false;  // the open profile is this one (not CUDA's)
  Clock::time_point start, last;
  std::vector<ProfileRow> rows;
  std::unordered_map<std::string, size_t> row_of;

  void begin() {
    active = true;
    rows.clear();
    row_of.clear();
    start = last = Clock::now();
  }
  void mark(const std::string& label) {
    const Clock::time_point now = Clock::now();
    auto [at, added] = row_of.try_emplace(label, rows.size());
    if (added) rows.push_back({label, 0, 0.0});
    ProfileRow& row = rows[at->second];
    row.calls += 1;
    row.ms += std::chrono::duration<double, std::milli>(now - last).count();
    last = now;
  }
  ProfileReport end() {
    active = false;
    ProfileReport report;
    report.total_ms = std::chrono::duration<double, std::milli>(last - start).count();
    report.ops = std::move(rows);
    std::stable_sort(report.ops.begin(), report.ops.end(),
                     [](const ProfileRow& a, const ProfileRow& b) { return a.ms > b.ms; });
    report.host_clock = true;
    return report;
  }
};

HostProfile& host_profile() {
  static HostProfile profile;
  return profile;
}

#ifndef MMS_WITH_CUDA
[[noreturn]] void no_cuda(const char* what) {
  fail(what, ": this build of mmscale has no CUDA support; profile a CPU device instead");
}
#endif

}  // namespace

#ifndef MMS_WITH_CUDA
void detail::cuda_profile_begin() { no_cuda("profile_begin(cuda)"); }
ProfileReport detail::cuda_profile_end() { no_cuda("profile_end"); }
void detail::cuda_profile_discard() {}
void detail::cuda_profile_mark(const std::string&) {}
#endif

void profile_begin(Device device) {
  MMS_CHECK(!detail::profile_open, "profile_begin: a profile is already open");
  if (device.is_cuda()) {
    detail::cuda_profile_begin();
  } else {
    host_profile().begin();
  }
  detail::profile_open = true;
}

ProfileReport profile_end() {
  MMS_CHECK(detail::profile_open, "profile_end: no profile is open (call profile_begin first)");
  detail::profile_open = false;
  if (host_profile().active) return host_profile().end();
  return detail::cuda_profile_end();
}

void profile_discard() {
  if (!detail::profile_open) return;
  detail::profile_open = false;
  if (host_profile().active) {
    host_profile().active = false;
  } else {
    detail::cuda_profile_discard();
  }
}

void detail::profile_mark_op_slow(const char* op, const char* phase) {
  const std::string label = phase == nullptr ? std::string(op) : std::string(op) + " " + phase;
  if (host_profile().active) {
    host_profile().mark(label);
  } else {
    cuda_profile_mark(label);
  }
}

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
  std::snprintf(line, sizeof line, "%s time profiled: %.3f ms\n", report.host_clock ? "CPU wall" : "GPU",
                report.total_ms);
  out += line;
  append_table(out, "op (forward, backward node, optimizer)", report.ops, report.total_ms, top);
  if (!report.kernels.empty()) {
    append_table(out, "kernel launch site (function:line)", report.kernels, report.total_ms, top);
  }
  return out;
}

}  // namespace mms
