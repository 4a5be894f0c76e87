// Host memory for tensors, with a bounded cache of freed large blocks.
//
// Why a cache: glibc serves large blocks (above its mmap threshold, 128 KiB at first and
// adapting upwards) with fresh mappings, and hands the top of its heap back to the kernel
// once more than twice that threshold is free there. A training step frees most of its
// activations at its end and asks for the same sizes again in the next step, so every
// step first-touched fresh pages: 458 page faults per step of the default fine-tune
// (each one a trap and a zeroed 4 KiB page), about 4% of the step. Freed blocks of
// kMinCachedBytes and more are kept here, keyed by their size, and handed back to the
// next request of the same size, already mapped.
//
// The cache is bounded (host_cache_set_limit, default kDefaultHostCacheLimit, or
// MMS_HOST_CACHE_MIB in the environment): past the limit the blocks cached longest ago
// go back to the C library. Blocks only enter it when a tensor frees them, so a
// steady loop's resident memory stays its peak working set; what varies from step to
// step (batches trimmed to different lengths) can add at most the limit.
//
// Under AddressSanitizer a cached block is poisoned, so reading a freed tensor's bytes is
// still reported while the block waits here.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mms {

inline constexpr size_t kMinCachedBytes = size_t(64) << 10;          // smaller: malloc's bins
inline constexpr size_t kDefaultHostCacheLimit = size_t(256) << 20;  // 256 MiB

// 64-byte aligned, uninitialised bytes; `*capacity` gets the size actually reserved
// (what host_release must be given back). Throws mms::Error when the host is out of memory.
void* host_allocate(size_t nbytes, size_t* capacity);
// Returns a block from host_allocate: cached when large and within the limit, else freed.
void host_release(void* data, size_t capacity);

struct HostCacheStats {
  size_t cached_bytes = 0;   // bytes waiting in the cache now
  size_t cached_blocks = 0;
  int64_t hits = 0;          // large requests served from the cache, since the start
  int64_t misses = 0;        // large requests that went to the C library
  size_t limit = 0;
};
HostCacheStats host_cache_stats();
// Sets the cap on cached bytes (0: no caching) and frees what is over it now.
void host_cache_set_limit(size_t bytes);
// Frees every cached block (the limit stays).
void host_cache_empty();

namespace detail {
// MMS_HOST_CACHE_MIB's value in bytes ("0" turns caching off); throws mms::Error naming
// the variable for anything but a whole number of MiB.
size_t parse_host_cache_mib(const char* text);
}  // namespace detail

}  // namespace mms
