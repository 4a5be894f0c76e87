// Where a stretch of GPU work spends its time, without Nsight: a timeline of CUDA events
// on the engine's stream.
//
// While a recording is open, every kernel launch (MMS_CUDA_LAUNCH_CHECK, which follows
// each launch and each cuBLAS call) and every op boundary (the engine marks each op's
// forward, each backward node and the optimizer: tensor/profile.h) records an event on
// stream(). The time between two consecutive events is the GPU time of the work queued
// between them, so each interval is charged to the mark that closes it: a kernel mark
// gets its kernel (and any copy or memset queued just before it), an op mark gets
// everything since the previous op mark. Kernel labels are function:line of the launch
// (a lambda shows as operator():line).
//
// That holds while the GPU is the bottleneck: if it ever waits for the host, the idle
// gap is charged to the next mark. begin() therefore first queues a spin kernel that
// keeps the GPU busy for `head_start_ms`, so the host gets ahead before the timeline
// starts; end() reports the total, which should be close to the unprofiled step time.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mms::cuda::profile {

struct Row {
  std::string label;
  int64_t calls = 0;
  double ms = 0.0;
};

struct Report {
  double total_ms = 0.0;     // first event to last
  std::vector<Row> ops;      // by op ("linear", "layer_norm backward", "adamw"), most time first
  std::vector<Row> kernels;  // by launch site ("layer_norm_forward_f32:88"), most time first
};

// True while a recording is open (cheap: read on every launch).
bool recording();
// Opens a recording on stream(). Fails while a graph is being captured or when one is
// already open.
void begin(double head_start_ms = 50.0);
// A kernel launch site; `function` must be a string with static storage (__func__).
void mark_kernel(const char* function, int line);
// The end of one op's work (forward, backward node, optimizer step).
void mark_op(const std::string& label);
// Waits for the stream, measures every interval and closes the recording.
Report end();
// Closes an open recording without measuring it (after an exception); no-op otherwise.
void discard();

}  // namespace mms::cuda::profile
