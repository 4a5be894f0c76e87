// Host -> device uploads that do not stall the host: a pinned staging ring.
//
// Why: cudaMemcpyAsync from pageable (ordinary malloc'd) memory cannot DMA directly;
// the driver first stages the bytes through pinned memory and may wait for the stream
// to do so, and the engine's plain memcpy() waits for the copy on purpose (the caller
// may reuse its buffer at once). Either way the host stops queueing work until the GPU
// has caught up, once per upload: a training step that uploads a few index tensors
// turns into a sequence of stalls. Here the host copies the bytes into a ring of pinned
// memory (a host memcpy, microseconds for the KB-sized index tensors), queues the DMA
// from there on stream(), records an event, and returns. A region of the ring is
// reused only after the event of the copy that last used it has completed, which in a
// steady state happened long ago.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace mms::cuda {

// Queues a copy of nbytes from host memory `src` to device memory `dst` on stream() and
// returns; `src` may be reused or freed at once. Waits only when the ring is full of
// copies still in flight. The ring starts at 64 MiB and grows (once, with a sync) to
// three times the largest upload seen.
void upload_async(void* dst, const void* src, size_t nbytes);

// Uploads during a graph capture (cuda/graph.h) cannot use the ring: the captured copy
// re-reads its source on every replay, so the bytes must stay put for the graph's life.
// begin_capture_uploads allocates a pinned arena of `bytes` (before capturing starts:
// the allocation may synchronise); until end_capture_uploads, each upload takes the
// next slot of it (an mms error when it is full). end_capture_uploads hands the arena
// to the caller, who keeps it alive as long as the graph.
void begin_capture_uploads(size_t bytes);
std::shared_ptr<void> end_capture_uploads();

// How many times the host has waited for the device so far: stream synchronisations,
// device -> host reads, and ring slots waited on. A step that adds nothing here lets
// the host run ahead of the GPU, so launch overhead hides behind kernel time.
int64_t host_sync_count();
// Counts one host wait (called by every path in cuda/ that blocks on the device).
void note_host_sync();

}  // namespace mms::cuda
