// The pinned staging ring behind upload_async (see cuda/staging.h for why).
//
// Layout: one pinned buffer used as a ring. Each upload takes the next 256-byte aligned
// region after `head` (wrapping to 0 when it would run off the end), waits for any copy
// still in flight over that region, copies the bytes in, queues the DMA and records an
// event. In-flight copies sit in a FIFO; completed ones are retired from the front
// without waiting (cudaEventQuery), so the FIFO stays short.
#include "cuda/staging.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <mutex>
#include <utility>
#include <vector>

#include "cuda/check.h"
#include "cuda/graph.h"
#include "cuda/runtime.h"

namespace mms::cuda {

namespace {

constexpr size_t kInitialRingBytes = size_t(64) << 20;
constexpr size_t kAlignment = 256;

std::atomic<int64_t> g_host_syncs{0};

struct InFlight {
  size_t begin = 0, end = 0;
  cudaEvent_t done = nullptr;
};

class StagingRing {
 public:
  void upload(void* dst, const void* src, size_t nbytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    // Room for three uploads of this size (e.g. this step's pixels, the last step's still
    // in flight, and the small index tensors between them) before a wait.
    if (nbytes > capacity_ / 3) grow(std::max(kInitialRingBytes, 3 * align(nbytes) + (size_t(1) << 20)));
    retire_completed();
    size_t begin = align(head_);
    if (begin + nbytes > capacity_) begin = 0;
    const size_t end = begin + nbytes;
    while (overlaps_in_flight(begin, end)) retire_front_waiting();
    std::memcpy(base_ + begin, src, nbytes);
    MMS_CUDA_CHECK(cudaMemcpyAsync(dst, base_ + begin, nbytes, cudaMemcpyHostToDevice, stream()));
    cudaEvent_t done = take_event();
    MMS_CUDA_CHECK(cudaEventRecord(done, stream()));
    in_flight_.push_back({begin, end, done});
    head_ = end;
  }

 private:
  static size_t align(size_t offset) { return (offset + kAlignment - 1) / kAlignment * kAlignment; }

  bool overlaps_in_flight(size_t begin, size_t end) const {
    return std::any_of(in_flight_.begin(), in_flight_.end(),
                       [&](const InFlight& f) { return f.begin < end && begin < f.end; });
  }

  // Drops finished copies from the front without blocking. cudaEventQuery's "not ready"
  // is a status, not a failure, but the runtime still records it as the last error:
  // clear it so the next launch check does not report it.
  void retire_completed() {
    while (!in_flight_.empty()) {
      const cudaError_t state = cudaEventQuery(in_flight_.front().done);
      if (state == cudaErrorNotReady) {
        (void)cudaGetLastError();
        return;
      }
      MMS_CUDA_CHECK(state);
      spare_events_.push_back(in_flight_.front().done);
      in_flight_.pop_front();
    }
  }

  void retire_front_waiting() {
    note_host_sync();
    MMS_CUDA_CHECK(cudaEventSynchronize(in_flight_.front().done));
    spare_events_.push_back(in_flight_.front().done);
    in_flight_.pop_front();
  }

  cudaEvent_t take_event() {
    if (!spare_events_.empty()) {
      cudaEvent_t event = spare_events_.back();
      spare_events_.pop_back();
      return event;
    }
    cudaEvent_t event = nullptr;
    MMS_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    return event;
  }

  // A bigger ring: every copy out of the old one must have finished before it is freed.
  void grow(size_t capacity) {
    while (!in_flight_.empty()) retire_front_waiting();
    if (base_ != nullptr) MMS_CUDA_CHECK(cudaFreeHost(base_));
    base_ = nullptr;
    MMS_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&base_), capacity, cudaHostAllocDefault));
    capacity_ = capacity;
    head_ = 0;
  }

  std::mutex mutex_;
  char* base_ = nullptr;
  size_t capacity_ = 0;
  size_t head_ = 0;
  std::deque<InFlight> in_flight_;
  std::vector<cudaEvent_t> spare_events_;
};

// Never destroyed: pinned memory and events are released with the process, which also
// keeps the ring valid for uploads from static destructors.
StagingRing& ring() {
  static StagingRing* the_ring = new StagingRing();
  return *the_ring;
}

// The arena of the capture in progress (one capture at a time per process).
struct CaptureArena {
  std::mutex mutex;
  std::shared_ptr<void> memory;
  size_t capacity = 0, used = 0;
  bool active = false;
};
CaptureArena& capture_arena() {
  static CaptureArena* the_arena = new CaptureArena();
  return *the_arena;
}

}  // namespace

void begin_capture_uploads(size_t bytes) {
  CaptureArena& arena = capture_arena();
  std::lock_guard<std::mutex> lock(arena.mutex);
  MMS_CUDA_REQUIRE(!arena.active, "begin_capture_uploads: a capture is already collecting uploads");
  void* memory = nullptr;
  MMS_CUDA_CHECK(cudaHostAlloc(&memory, bytes, cudaHostAllocDefault));
  arena.memory = std::shared_ptr<void>(memory, [](void* p) {
    if (cudaFreeHost(p) != cudaSuccess) cudaGetLastError();
  });
  arena.capacity = bytes;
  arena.used = 0;
  arena.active = true;
}

std::shared_ptr<void> end_capture_uploads() {
  CaptureArena& arena = capture_arena();
  std::lock_guard<std::mutex> lock(arena.mutex);
  arena.active = false;
  return std::exchange(arena.memory, nullptr);
}

void upload_async(void* dst, const void* src, size_t nbytes) {
  if (nbytes == 0) return;
  CaptureArena& arena = capture_arena();
  {
    std::lock_guard<std::mutex> lock(arena.mutex);
    // Only the capturing thread's uploads belong to the graph (capture is per thread);
    // another thread's upload during a capture takes the ring as usual.
    if (arena.active && capturing()) {
      const size_t begin = (arena.used + kAlignment - 1) / kAlignment * kAlignment;
      MMS_CUDA_REQUIRE(begin + nbytes <= arena.capacity,
                       "graph capture: the uploads of the captured step need more pinned memory than "
                       "the capture's arena holds (raise CapturedGraph::capture's upload_bytes)");
      char* slot = static_cast<char*>(arena.memory.get()) + begin;
      std::memcpy(slot, src, nbytes);
      MMS_CUDA_CHECK(cudaMemcpyAsync(dst, slot, nbytes, cudaMemcpyHostToDevice, stream()));
      arena.used = begin + nbytes;
      return;
    }
  }
  ring().upload(dst, src, nbytes);
}

int64_t host_sync_count() { return g_host_syncs.load(std::memory_order_relaxed); }
void note_host_sync() { g_host_syncs.fetch_add(1, std::memory_order_relaxed); }

}  // namespace mms::cuda
