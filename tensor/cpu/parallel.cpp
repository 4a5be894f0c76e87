// The help-first thread pool behind parallel_parts (see parallel.h for why).
//
// One job at a time (only the thread that owns the pool posts jobs; a nested call runs
// serially). The job's identity and progress live in one 64-bit atomic word,
//   state = generation (24 bits) | parts (20 bits) | next unclaimed part (20 bits),
// so a thread claims part i of job g with one compare-and-swap that fails if the job
// has changed: a worker that slept through several jobs can never run a part of the
// wrong one. The job's function pointer and context are written before the state is
// published and stay valid until every part is done, which the poster waits for.
#include "tensor/cpu/parallel.h"

#include <omp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MMS_CPU_RELAX() _mm_pause()
#else
#define MMS_CPU_RELAX() std::this_thread::yield()
#endif

namespace mms::cpu {

namespace {

constexpr int kGenBits = 24, kPartBits = 20;
constexpr uint64_t kPartMask = (uint64_t(1) << kPartBits) - 1;
constexpr int64_t kMaxParts = int64_t(kPartMask);

thread_local bool t_inside_part = false;

// How long an idle worker spins before it sleeps: kernels of one step follow each
// other within microseconds, so a short spin catches the next job without a wake-up
// system call; longer spins would only burn a core that other work could use.
constexpr auto kSpin = std::chrono::microseconds(100);

class Pool {
 public:
  // Posts the job and helps run it; returns when every part is done.
  void run(int64_t parts, int threads, void (*body)(void*, int64_t), void* context) {
    ensure_workers(threads - 1);
    body_ = body;
    context_ = context;
    done_.store(0, std::memory_order_relaxed);
    generation_ = (generation_ + 1) & ((uint64_t(1) << kGenBits) - 1);
    const uint64_t posted = (generation_ << (2 * kPartBits)) | (uint64_t(parts) << kPartBits);
    state_.store(posted, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      wake_.notify_all();
    }
    t_inside_part = true;
    work(posted);
    t_inside_part = false;
    // Parts other threads claimed may still be running.
    int spins = 0;
    while (done_.load(std::memory_order_acquire) < parts)
      if (++spins < 4096) MMS_CPU_RELAX(); else std::this_thread::yield();
  }

 private:
  // Claims and runs parts of the job `seen` was read from until none is left.
  void work(uint64_t seen) {
    const uint64_t generation = seen >> (2 * kPartBits);
    const int64_t parts = static_cast<int64_t>((seen >> kPartBits) & kPartMask);
    uint64_t s = state_.load(std::memory_order_acquire);
    for (;;) {
      if ((s >> (2 * kPartBits)) != generation) return;
      const int64_t next = static_cast<int64_t>(s & kPartMask);
      if (next >= parts) return;
      if (!state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
      body_(context_, next);
      done_.fetch_add(1, std::memory_order_release);
      s = state_.load(std::memory_order_acquire);
    }
  }

  void ensure_workers(int wanted) {
    while (static_cast<int>(workers_.size()) < wanted) {
      workers_.emplace_back([this] { worker_loop(); });
      workers_.back().detach();  // the pool lives for the whole process
    }
  }

  void worker_loop() {
    t_inside_part = true;  // anything a part calls runs serially
    uint64_t last = state_.load(std::memory_order_acquire);
    for (;;) {
      uint64_t s = state_.load(std::memory_order_acquire);
      if ((s >> (2 * kPartBits)) == (last >> (2 * kPartBits))) {
        const auto deadline = std::chrono::steady_clock::now() + kSpin;
        int i = 0;
        while ((s = state_.load(std::memory_order_acquire)) >> (2 * kPartBits) == last >> (2 * kPartBits)) {
          MMS_CPU_RELAX();
          if ((++i & 63) == 0 && std::chrono::steady_clock::now() > deadline) break;
        }
        if ((s >> (2 * kPartBits)) == (last >> (2 * kPartBits))) {
          std::unique_lock<std::mutex> lock(mutex_);
          sleepers_.fetch_add(1, std::memory_order_seq_cst);
          wake_.wait(lock, [&] {
            s = state_.load(std::memory_order_seq_cst);
            return (s >> (2 * kPartBits)) != (last >> (2 * kPartBits));
          });
          sleepers_.fetch_sub(1, std::memory_order_seq_cst);
        }
      }
      last = s;
      work(s);
    }
  }

  std::atomic<uint64_t> state_{0};
  std::atomic<int64_t> done_{0};
  std::atomic<int> sleepers_{0};
  uint64_t generation_ = 0;  // written by the posting thread only
  void (*body_)(void*, int64_t) = nullptr;
  void* context_ = nullptr;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::thread> workers_;
};

Pool& pool() {
  static Pool* instance = new Pool;  // never destroyed: detached workers use it until exit
  return *instance;
}

// Only one thread at a time may post (the pool has one job slot); another thread that
// calls in meanwhile runs its job serially.
std::atomic<bool> g_posting{false};

}  // namespace

int parallel_threads() {
  if (t_inside_part || omp_in_parallel()) return 1;
  return omp_get_max_threads();
}

void parallel_parts_raw(int64_t parts, void (*body)(void*, int64_t), void* context) {
  if (parts <= 0) return;
  const int threads = parallel_threads();
  bool expected = false;
  if (threads <= 1 || parts == 1 || parts > kMaxParts ||
      !g_posting.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
    for (int64_t p = 0; p < parts; ++p) body(context, p);
    return;
  }
  pool().run(parts, threads, body, context);
  g_posting.store(false, std::memory_order_release);
}

}  // namespace mms::cpu
