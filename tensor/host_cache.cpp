#include "tensor/host_cache.h"

#include <cerrno>
#include <cstdlib>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "tensor/error.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define MMS_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define MMS_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define MMS_POISON(p, n) ((void)(p), (void)(n))
#define MMS_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace mms {

namespace {

constexpr size_t kPage = 4096;

// Small blocks are rounded to the 64-byte alignment (aligned_alloc wants a multiple of
// it); large ones to whole pages, so requests a few bytes apart share a size class.
size_t capacity_for(size_t nbytes) {
  if (nbytes == 0) return 64;
  if (nbytes < kMinCachedBytes) return (nbytes + 63) / 64 * 64;
  return (nbytes + kPage - 1) / kPage * kPage;
}

size_t limit_from_environment() {
  const char* text = std::getenv("MMS_HOST_CACHE_MIB");
  if (text == nullptr || *text == '\0') return kDefaultHostCacheLimit;
  return detail::parse_host_cache_mib(text);
}

class BlockCache {
 public:
  void* take(size_t capacity) {
    std::lock_guard<std::mutex> lock(mutex_);
    ensure_limit();
    auto found = by_size_.find(capacity);
    if (found == by_size_.end() || found->second.empty()) {
      ++misses_;
      return nullptr;
    }
    // The block freed last of this size: the likeliest to be in cache still.
    const auto entry = found->second.back();
    found->second.pop_back();
    void* data = entry->data;
    age_.erase(entry);
    cached_bytes_ -= capacity;
    ++hits_;
    MMS_UNPOISON(data, capacity);
    return data;
  }

  // False when the block does not fit under the limit (the caller frees it), or when the
  // bookkeeping cannot grow: this runs in ~Storage, where nothing may throw.
  bool keep(void* data, size_t capacity) {
    std::lock_guard<std::mutex> lock(mutex_);
    ensure_limit();
    if (capacity > limit_) return false;
    try {
      std::vector<Entry>& same = by_size_[capacity];
      same.reserve(same.size() + 1);           // so that the push_back below cannot throw
      age_.push_back({capacity, data});        // if this throws, nothing has changed
      same.push_back(std::prev(age_.end()));
    } catch (...) {
      return false;
    }
    cached_bytes_ += capacity;
    MMS_POISON(data, capacity);
    trim_to(limit_);
    return true;
  }

  void set_limit(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    limit_ = bytes;
    limit_known_ = true;
    trim_to(limit_);
  }

  void empty() {
    std::lock_guard<std::mutex> lock(mutex_);
    trim_to(0);
  }

  HostCacheStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    ensure_limit();
    return {cached_bytes_, age_.size(), hits_, misses_, limit_};
  }

 private:
  struct Block {
    size_t capacity;
    void* data;
  };
  using Entry = std::list<Block>::iterator;

  // The environment is read on first use, not in a static initialiser, so a bad value
  // is an mms::Error the caller can catch.
  // A bad value throws once (at the first large allocation) and leaves caching off, so
  // host_release, which runs in destructors, never throws.
  void ensure_limit() {
    if (limit_known_) return;
    limit_known_ = true;
    limit_ = 0;
    limit_ = limit_from_environment();
  }

  // Frees the blocks cached longest ago until at most `bytes` stay.
  void trim_to(size_t bytes) {
    while (cached_bytes_ > bytes) {
      const Block oldest = age_.front();
      // The oldest block of any size is also the oldest of its own size: the front.
      std::vector<Entry>& same = by_size_[oldest.capacity];
      same.erase(same.begin());
      age_.pop_front();
      cached_bytes_ -= oldest.capacity;
      MMS_UNPOISON(oldest.data, oldest.capacity);
      std::free(oldest.data);
    }
  }

  std::mutex mutex_;
  std::list<Block> age_;                                  // oldest first
  std::unordered_map<size_t, std::vector<Entry>> by_size_;  // per size: oldest first
  size_t cached_bytes_ = 0;
  size_t limit_ = 0;
  bool limit_known_ = false;
  int64_t hits_ = 0, misses_ = 0;
};

// Never destroyed: tensors held in static objects free their blocks during exit.
BlockCache& cache() {
  static BlockCache* instance = new BlockCache;
  return *instance;
}

}  // namespace

size_t detail::parse_host_cache_mib(const char* text) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long mib = std::strtoull(text, &end, 10);
  MMS_CHECK(errno == 0 && end != text && *end == '\0' && text[0] != '-' && mib < (1ull << 30),
            "MMS_HOST_CACHE_MIB: expected a whole number of MiB (0 turns the host block cache "
            "off), got '", text, "'");
  return static_cast<size_t>(mib) << 20;
}

void* host_allocate(size_t nbytes, size_t* capacity) {
  const size_t reserved = capacity_for(nbytes);
  *capacity = reserved;
  if (reserved >= kMinCachedBytes) {
    if (void* data = cache().take(reserved)) return data;
  }
  void* data = std::aligned_alloc(64, reserved);
  MMS_CHECK(data != nullptr, "allocate: out of host memory asking for ", nbytes, " bytes");
  return data;
}

void host_release(void* data, size_t capacity) {
  if (data == nullptr) return;
  if (capacity >= kMinCachedBytes && cache().keep(data, capacity)) return;
  std::free(data);
}

HostCacheStats host_cache_stats() { return cache().stats(); }
void host_cache_set_limit(size_t bytes) { cache().set_limit(bytes); }
void host_cache_empty() { cache().empty(); }

}  // namespace mms
