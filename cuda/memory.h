// Device memory: a stream-ordered pool on top of cudaMallocAsync.
//
// Why: cudaMalloc/cudaFree synchronise the device and cost tens of microseconds; a
// training step allocates hundreds of activations. The pool (the device's default
// cudaMemPool with its release threshold raised to "never") keeps freed blocks for
// reuse, so after the first step no call reaches the driver's allocator. Blocks are
// allocated and freed on stream(), so reuse is ordered with the kernels that used them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "cuda/common.h"

namespace mms::cuda {

// nbytes of device memory from the pool (nullptr for 0 bytes); 256-byte aligned.
void* pool_allocate(size_t nbytes);
void pool_free(void* pointer);

struct PoolStats {
  size_t bytes_in_use = 0;     // allocated by the engine and not yet freed
  size_t peak_bytes_in_use = 0;
  size_t bytes_reserved = 0;   // held by the pool from the driver (in use + cached)
  uint64_t allocations = 0;    // calls to pool_allocate with nbytes > 0
};
PoolStats pool_stats();
void pool_reset_peak();
// Returns cached blocks to the driver (e.g. before measuring memory of a fresh phase).
void pool_trim();

// Bookkeeping for a graph capture (cuda/graph.h): between begin and end, allocations
// are the graph's own and must all be freed inside the capture, and nothing allocated
// before it may be freed inside it (a replay would free it again). end reports both
// kinds of mistakes (empty string: none), so the capture can fail with a clear message
// instead of a later replay failing obscurely.
void pool_begin_capture();
std::string pool_end_capture();

// A scoped scratch buffer from the pool, for kernels needing temporary space. It is
// freed on stream(), so the kernels using it must run on stream() too.
class ScratchBuffer {
 public:
  explicit ScratchBuffer(size_t nbytes) : data_(pool_allocate(nbytes)) {}
  ~ScratchBuffer() { pool_free(data_); }
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  void* data() const { return data_; }
  template <typename T>
  T* as() const { return static_cast<T*>(data_); }

 private:
  void* data_;
};

}  // namespace mms::cuda
