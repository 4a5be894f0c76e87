// One training step as one CUDA graph: capture the engine's calls once, replay them.
//
// Why: an eager step is thousands of small launches, each costing the host a few
// microseconds of dispatch (shape checks, autograd bookkeeping, the launch itself). At
// ViT-B/32 sizes that host time is comparable to the GPU time. A graph records every
// kernel, copy, allocation and free queued on stream() between begin and end of the
// capture; a replay queues all of them with one call, so the host cost per step drops
// to ~microseconds and the GPU runs back to back.
//
// What a captured body must respect (the capture fails with the runtime's message when
// it does not, and the graph is then unusable; callers fall back to eager):
//   - no host waits: no stream sync and no device -> host read (device_sync_count()
//     must not move during the body);
//   - host -> device uploads are frozen into the graph: during a capture each upload
//     gets its own slot of a pinned arena owned by the graph (cuda/staging.h), so a
//     replay re-sends the same bytes. Values the host computed are frozen too: index
//     tensors, kernel arguments such as a learning rate or a step count (nn::AdamW's
//     capturable mode keeps those on the device), and dropout's seed and offset (a
//     replay draws the same mask: capture dropout-free steps);
//   - one thread: the capturing thread's work is recorded; other threads must not use
//     the engine during a capture;
//   - memory: allocations made in the body live in the graph's own pool; every tensor
//     the body creates must be released before the capture ends (copy results into
//     tensors allocated before the capture), and the body must not free memory that
//     was allocated outside it (a replay would free it again). The pool checks both
//     and capture() fails with a count if either happens (cuda/memory.h).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

#include "cuda/common.h"

// The runtime's own spellings (as cuda/common.h does for the stream), so this header
// stays includable without the CUDA headers.
struct CUgraph_st;
typedef CUgraph_st* cudaGraph_t;
struct CUgraphExec_st;
typedef CUgraphExec_st* cudaGraphExec_t;

namespace mms::cuda {

class CapturedGraph {
 public:
  CapturedGraph() = default;
  ~CapturedGraph();
  CapturedGraph(const CapturedGraph&) = delete;
  CapturedGraph& operator=(const CapturedGraph&) = delete;

  // Runs body() with stream() capturing (thread-local mode: a forbidden call from this
  // thread fails instead of silently syncing), then instantiates the graph. Uploads
  // during the body take at most upload_bytes of pinned memory. Throws on failure, after
  // ending the capture so the stream is usable again.
  void capture(const std::function<void()>& body, size_t upload_bytes = size_t(64) << 20);
  // Queues one replay of the captured work on stream().
  void replay();
  bool ready() const { return exec_ != nullptr; }
  size_t node_count() const { return nodes_; }

 private:
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
  size_t nodes_ = 0;
  std::shared_ptr<void> upload_arena_;  // the pinned bytes the graph's copies read
};

// True while this thread is capturing (uploads then go to the capture's arena).
bool capturing();

// The most device memory graphs have held at once (the driver's count; the engine's
// pool statistics do not see graph memory).
size_t graph_memory_high_bytes();

}  // namespace mms::cuda
