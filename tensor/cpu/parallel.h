// The CPU kernels' thread pool: parallel_for that never waits for a thread to show up.
//
// Why not `#pragma omp parallel`: an OpenMP region ends in a barrier that waits for
// every thread of the team. On the 2-core development machine, shared with compilers
// and other jobs, the second thread is often not running when a region starts; the
// calling thread then finishes its half and waits up to a scheduler time slice (ms)
// for the other thread to be scheduled, do its half and arrive. A fine-tuning step of
// the default (small) model starts ~160 such regions: measured at load average 6, the
// step took 430-820 ms on 2 OpenMP threads against 90 ms on 1.
//
// Here the caller is one of the workers ("help first"): the range is cut into a fixed
// number of parts, every thread (the caller included) claims parts from one atomic
// counter, and the caller only waits for parts another thread has already started. A
// worker that wakes late finds nothing left and goes back to sleep; on an idle machine
// the workers are spinning and take their share within a microsecond or two.
//
// The cut depends only on the range and the configured thread count (never on which
// thread ran what), so reductions over per-part partials are deterministic.
// Thread count: omp_get_max_threads() (OMP_NUM_THREADS, omp_set_num_threads), so the
// existing knobs keep working. Inside a part (or inside an OpenMP region) a nested
// parallel_for runs serially on the calling thread. Bodies must not throw (one that does
// terminates the program, as in an OpenMP region): check inputs before the parallel call.
#pragma once

#include <cstdint>
#include <utility>

namespace mms::cpu {

// How many threads a parallel_for started here would use (1 inside a part or an
// OpenMP region).
int parallel_threads();

// Runs body(part) for every part in [0, parts) on the pool; returns when all are done.
void parallel_parts_raw(int64_t parts, void (*body)(void* context, int64_t part), void* context);

template <typename Body>
void parallel_parts(int64_t parts, Body&& body) {
  auto* context = &body;
  parallel_parts_raw(
      parts,
      // noexcept: an exception escaping a part would unwind past the pool's bookkeeping
      // while other threads still run parts of the same job; it terminates instead.
      [](void* c, int64_t part) noexcept { (*static_cast<std::remove_reference_t<Body>*>(c))(part); },
      const_cast<void*>(static_cast<const void*>(context)));
}

// body(begin, end) over [0, n) cut into `parts` equal ranges (part t: [n t / parts,
// n (t + 1) / parts)), the same cut as OpenMP's schedule(static).
template <typename Body>
void parallel_ranges(int64_t n, int64_t parts, Body&& body) {
  parallel_parts(parts, [&](int64_t t) { body(n * t / parts, n * (t + 1) / parts); });
}

}  // namespace mms::cpu
