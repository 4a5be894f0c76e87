// The host block cache (tensor/host_cache.h): a freed large tensor's block serves the
// next tensor of the same size, small blocks are left to malloc, the limit holds with
// the oldest blocks going first, and a bad MMS_HOST_CACHE_MIB is refused by name.
#include <doctest/doctest.h>

#include <string>

#include "autograd/api.h"
#include "tensor/host_cache.h"

using namespace mms;

namespace {

constexpr size_t kMiB = size_t(1) << 20;

// Every case starts from an empty cache with a known limit and puts the default back.
struct FreshCache {
  explicit FreshCache(size_t limit) {
    host_cache_empty();
    host_cache_set_limit(limit);
  }
  ~FreshCache() { host_cache_set_limit(kDefaultHostCacheLimit); }
};

}  // namespace

TEST_CASE("a freed large tensor's block serves the next tensor of the same size") {
  FreshCache fresh(64 * kMiB);
  const int64_t floats = int64_t(kMiB / sizeof(float));  // 1 MiB, a whole number of pages
  const void* first = nullptr;
  {
    Tensor a = empty({floats});
    first = a.raw_data();
  }
  HostCacheStats after_free = host_cache_stats();
  CHECK(after_free.cached_blocks == 1);
  CHECK(after_free.cached_bytes == kMiB);

  Tensor b = empty({floats});
  CHECK(b.raw_data() == first);
  HostCacheStats after_reuse = host_cache_stats();
  CHECK(after_reuse.hits == after_free.hits + 1);
  CHECK(after_reuse.cached_bytes == 0);

  // A size one page larger is another size class: a miss, fresh memory.
  Tensor c = empty({floats + 1024});
  CHECK(c.raw_data() != first);
  CHECK(host_cache_stats().misses == after_reuse.misses + 1);

  // Requests a few bytes apart round to the same pages and share the block.
  const void* second = c.raw_data();
  c = Tensor();
  Tensor d = empty({floats + 1000});
  CHECK(d.raw_data() == second);
}

TEST_CASE("small blocks are not cached") {
  FreshCache fresh(64 * kMiB);
  { Tensor small = empty({int64_t(kMinCachedBytes / sizeof(float)) - 16}); }
  CHECK(host_cache_stats().cached_blocks == 0);
  { Tensor large = empty({int64_t(kMinCachedBytes / sizeof(float))}); }
  CHECK(host_cache_stats().cached_blocks == 1);
}

TEST_CASE("the cache stays under its limit, freeing the blocks cached longest ago") {
  FreshCache fresh(3 * kMiB);
  void* blocks[4];
  size_t capacity = 0;
  for (void*& block : blocks) {
    block = host_allocate(kMiB, &capacity);
    CHECK(capacity == kMiB);
  }
  for (void* block : blocks) host_release(block, capacity);
  HostCacheStats full = host_cache_stats();
  CHECK(full.cached_bytes == 3 * kMiB);
  CHECK(full.cached_blocks == 3);

  // The last freed comes back first; the first freed (blocks[0]) was given to libc.
  CHECK(host_allocate(kMiB, &capacity) == blocks[3]);
  CHECK(host_allocate(kMiB, &capacity) == blocks[2]);
  CHECK(host_allocate(kMiB, &capacity) == blocks[1]);
  CHECK(host_cache_stats().cached_blocks == 0);
  for (int i = 1; i < 4; ++i) host_release(blocks[i], capacity);

  // A block larger than the whole limit is never kept.
  void* huge = host_allocate(4 * kMiB, &capacity);
  host_release(huge, capacity);
  CHECK(host_cache_stats().cached_bytes == 3 * kMiB);

  // Lowering the limit frees down to it; 0 empties the cache and stops caching.
  host_cache_set_limit(kMiB);
  CHECK(host_cache_stats().cached_bytes == kMiB);
  host_cache_set_limit(0);
  CHECK(host_cache_stats().cached_blocks == 0);
  { Tensor t = empty({int64_t(kMiB / sizeof(float))}); }
  CHECK(host_cache_stats().cached_blocks == 0);
}

TEST_CASE("eviction goes by age across sizes, not by size") {
  FreshCache fresh(3 * kMiB);
  size_t small_capacity = 0, large_capacity = 0, newest_capacity = 0;
  void* oldest = host_allocate(kMiB, &small_capacity);
  void* large = host_allocate(2 * kMiB, &large_capacity);
  void* newest = host_allocate(kMiB, &newest_capacity);
  host_release(oldest, small_capacity);   // cached: 1 MiB
  host_release(large, large_capacity);    // cached: 3 MiB
  host_release(newest, newest_capacity);  // 4 MiB > 3: the oldest block goes, not the largest
  HostCacheStats stats = host_cache_stats();
  CHECK(stats.cached_bytes == 3 * kMiB);
  CHECK(stats.cached_blocks == 2);
  size_t capacity = 0;
  CHECK(host_allocate(kMiB, &capacity) == newest);       // the 1 MiB left is the newest one
  CHECK(host_cache_stats().cached_blocks == 1);
  CHECK(host_allocate(2 * kMiB, &capacity) == large);
  host_release(newest, kMiB);
  host_release(large, 2 * kMiB);
}

TEST_CASE("MMS_HOST_CACHE_MIB takes a whole number of MiB and names itself when it is not one") {
  CHECK(detail::parse_host_cache_mib("0") == 0);
  CHECK(detail::parse_host_cache_mib("512") == 512 * kMiB);
  for (const char* bad : {"", "-1", "12x", "1.5", "abc", "99999999999"}) {
    CAPTURE(std::string(bad));
    try {
      detail::parse_host_cache_mib(bad);
      FAIL("accepted");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find("MMS_HOST_CACHE_MIB") != std::string::npos);
      CHECK(std::string(e.what()).find(std::string("'") + bad + "'") != std::string::npos);
    }
  }
}
