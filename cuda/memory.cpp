// The stream-ordered device pool (see memory.h). Sizes are tracked on the host so the
// engine can report bytes in use and the peak without asking the driver.
#include "cuda/memory.h"

#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "cuda/check.h"

namespace mms::cuda {

namespace {

struct PoolState {
  std::mutex mutex;
  std::unordered_map<void*, size_t> sizes;
  PoolStats stats;
  cudaMemPool_t pool = nullptr;
  // During a capture: the graph's allocations still live, and frees of older blocks.
  bool capturing = false;
  std::unordered_map<void*, size_t> captured_live;
  size_t outside_frees = 0;
};

PoolState& state() {
  static PoolState* the_state = [] {
    auto* created = new PoolState();  // never destroyed: tensors may outlive static teardown
    int device = 0;
    MMS_CUDA_CHECK(cudaGetDevice(&device));
    MMS_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&created->pool, device));
    // Keep freed memory cached in the pool instead of returning it at each sync.
    uint64_t threshold = UINT64_MAX;
    MMS_CUDA_CHECK(cudaMemPoolSetAttribute(created->pool, cudaMemPoolAttrReleaseThreshold, &threshold));
    return created;
  }();
  return *the_state;
}

}  // namespace

void* pool_allocate(size_t nbytes) {
  if (nbytes == 0) return nullptr;
  PoolState& pool = state();
  void* pointer = nullptr;
  const cudaError_t status = cudaMallocAsync(&pointer, nbytes, stream());
  if (status != cudaSuccess) {
    cudaGetLastError();
    std::string message = std::string(cudaGetErrorString(status)) + " asking for " +
                          std::to_string(nbytes) + " bytes (" +
                          std::to_string(pool_stats().bytes_in_use) + " in use)";
    report_cuda_error(__FILE__, __LINE__, "cudaMallocAsync", message.c_str());
  }
  std::lock_guard<std::mutex> lock(pool.mutex);
  if (pool.capturing) pool.captured_live[pointer] = nbytes;
  pool.sizes[pointer] = nbytes;
  pool.stats.bytes_in_use += nbytes;
  pool.stats.allocations += 1;
  if (pool.stats.bytes_in_use > pool.stats.peak_bytes_in_use)
    pool.stats.peak_bytes_in_use = pool.stats.bytes_in_use;
  return pointer;
}

void pool_free(void* pointer) {
  if (pointer == nullptr) return;
  PoolState& pool = state();
  {
    std::lock_guard<std::mutex> lock(pool.mutex);
    if (pool.capturing && pool.captured_live.erase(pointer) == 0) {
      // A block from before the capture: freeing it inside would be replayed. Keep it.
      pool.outside_frees += 1;
      return;
    }
    auto found = pool.sizes.find(pointer);
    // Unknown: an allocation of a graph whose capture failed, released with the graph
    // (pool_end_capture). Its address may already belong to a live block: do not free.
    if (found == pool.sizes.end()) return;
    pool.stats.bytes_in_use -= found->second;
    pool.sizes.erase(found);
  }
  // Never throws: storages are released from destructors, some during process exit when
  // the runtime may already be unloading; a failed free there is harmless.
  if (cudaFreeAsync(pointer, stream()) != cudaSuccess) cudaGetLastError();
}

PoolStats pool_stats() {
  PoolState& pool = state();
  uint64_t reserved = 0;
  MMS_CUDA_CHECK(cudaMemPoolGetAttribute(pool.pool, cudaMemPoolAttrReservedMemCurrent, &reserved));
  std::lock_guard<std::mutex> lock(pool.mutex);
  PoolStats stats = pool.stats;
  stats.bytes_reserved = reserved;
  return stats;
}

void pool_reset_peak() {
  PoolState& pool = state();
  std::lock_guard<std::mutex> lock(pool.mutex);
  pool.stats.peak_bytes_in_use = pool.stats.bytes_in_use;
}

void pool_trim() {
  PoolState& pool = state();
  synchronize();
  MMS_CUDA_CHECK(cudaMemPoolTrimTo(pool.pool, 0));
}

void pool_begin_capture() {
  PoolState& pool = state();
  std::lock_guard<std::mutex> lock(pool.mutex);
  pool.capturing = true;
  pool.captured_live.clear();
  pool.outside_frees = 0;
}

std::string pool_end_capture() {
  PoolState& pool = state();
  std::lock_guard<std::mutex> lock(pool.mutex);
  pool.capturing = false;
  std::string problems;
  if (!pool.captured_live.empty()) {
    size_t bytes = 0;
    for (const auto& [pointer, size] : pool.captured_live) {
      bytes += size;
      pool.sizes.erase(pointer);  // the graph owns them; they die with it
      pool.stats.bytes_in_use -= size;
    }
    problems += std::to_string(pool.captured_live.size()) + " allocation(s) (" + std::to_string(bytes) +
                " bytes) made inside the captured body outlive it (keep results in tensors allocated before "
                "the capture; run one step eagerly first so lazily created state exists)";
  }
  if (pool.outside_frees > 0)
    problems += std::string(problems.empty() ? "" : "; ") + std::to_string(pool.outside_frees) +
                " block(s) allocated before the capture were freed inside it (release them before capturing)";
  pool.captured_live.clear();
  pool.outside_frees = 0;
  return problems;
}

}  // namespace mms::cuda
