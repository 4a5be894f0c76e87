// The event timeline behind cuda/profile.h.
#include "cuda/profile.h"

#include <algorithm>
#include <map>
#include <string>

#include "cuda/check.h"
#include "cuda/graph.h"

namespace mms::cuda::profile {

namespace {

// Busy-waits for `cycles` SM clock cycles: a GPU that is busy while the host queues.
__global__ void spin_kernel(long long cycles) {
  const long long start = clock64();
  while (clock64() - start < cycles) {
  }
}

struct Mark {
  const char* function = nullptr;  // a kernel mark: its launch site
  int line = 0;
  std::string op;                  // an op mark: its label
};

struct Timeline {
  bool open = false;
  std::vector<cudaEvent_t> events;  // events[0] is the start; kept between recordings
  std::vector<Mark> marks;          // marks[i] closes the interval (events[i], events[i + 1])
  size_t used = 0;                  // events recorded in this recording
};

Timeline& timeline() {
  static Timeline t;
  return t;
}

void record_event() {
  Timeline& t = timeline();
  if (t.used == t.events.size()) {
    cudaEvent_t event = nullptr;
    MMS_CUDA_CHECK(cudaEventCreate(&event));
    t.events.push_back(event);
  }
  MMS_CUDA_CHECK(cudaEventRecord(t.events[t.used++], stream()));
}

void add(std::map<std::string, Row>& rows, const std::string& label, double ms) {
  Row& row = rows[label];
  row.label = label;
  row.calls += 1;
  row.ms += ms;
}

std::vector<Row> by_time(const std::map<std::string, Row>& rows) {
  std::vector<Row> sorted;
  for (const auto& [_, row] : rows) sorted.push_back(row);
  std::sort(sorted.begin(), sorted.end(), [](const Row& a, const Row& b) { return a.ms > b.ms; });
  return sorted;
}

}  // namespace

bool recording() { return timeline().open; }

void begin(double head_start_ms) {
  Timeline& t = timeline();
  MMS_CUDA_REQUIRE(!t.open, "cuda::profile::begin: a recording is already open");
  MMS_CUDA_REQUIRE(!capturing(), "cuda::profile::begin: not while a CUDA graph is being captured");
  int device = 0, clock_khz = 0;
  MMS_CUDA_CHECK(cudaGetDevice(&device));
  MMS_CUDA_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, device));
  spin_kernel<<<1, 1, 0, stream()>>>(static_cast<long long>(head_start_ms * clock_khz));
  MMS_CUDA_CHECK(cudaGetLastError());
  t.marks.clear();
  t.used = 0;
  record_event();
  t.open = true;
}

void mark_kernel(const char* function, int line) {
  Timeline& t = timeline();
  if (!t.open || capturing()) return;
  record_event();
  t.marks.push_back({function, line, {}});
}

void mark_op(const std::string& label) {
  Timeline& t = timeline();
  if (!t.open || capturing()) return;
  record_event();
  t.marks.push_back({nullptr, 0, label});
}

void discard() { timeline().open = false; }

Report end() {
  Timeline& t = timeline();
  MMS_CUDA_REQUIRE(t.open, "cuda::profile::end: no recording is open");
  t.open = false;
  Report report;
  if (t.used == 0) return report;
  MMS_CUDA_CHECK(cudaEventSynchronize(t.events[t.used - 1]));
  std::map<std::string, Row> ops, kernels;
  double since_last_op = 0.0;
  for (size_t i = 0; i + 1 < t.used; ++i) {
    float ms = 0.0f;
    MMS_CUDA_CHECK(cudaEventElapsedTime(&ms, t.events[i], t.events[i + 1]));
    const Mark& mark = t.marks[i];
    report.total_ms += ms;
    since_last_op += ms;
    if (mark.function != nullptr) {
      add(kernels, std::string(mark.function) + ":" + std::to_string(mark.line), ms);
    } else {
      // Work between launches that no kernel mark closed (copies, memsets, waits).
      if (ms > 0.0f) add(kernels, "(copies and gaps before an op mark)", ms);
      add(ops, mark.op, since_last_op);
      since_last_op = 0.0;
    }
  }
  if (since_last_op > 0.0) add(ops, "(after the last op mark)", since_last_op);
  report.ops = by_time(ops);
  report.kernels = by_time(kernels);
  return report;
}

}  // namespace mms::cuda::profile
