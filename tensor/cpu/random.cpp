// Uniform and normal fills from the Philox stream of cuda/philox.h, element i at stream
// position offset + i, so the CUDA kernel (cuda/random.cu) produces the same numbers.
#include "cuda/philox.h"
#include "tensor/cpu/convert.h"
#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/parallel.h"

namespace mms::cpu {

namespace {

template <typename T>
void random_fill(RandomKind kind, uint64_t seed, uint64_t offset, double a, double b, T* out,
                 int64_t n) {
  // Philox is pure arithmetic with no state, so threads split the range freely; one
  // element costs ~10 rounds of multiplies, so count it as 8 elements of simple work.
  auto run_ranges = [&](int64_t count, auto body) {
    if (parallel_worth_it(count, count * 8)) {
      parallel_ranges(count, parallel_threads(), body);
    } else {
      body(0, count);
    }
  };
  if (kind == RandomKind::Uniform) {
    // the 24-bit uniform is exact in float; the affine map is done in double and rounded
    // once, matching the CUDA side
    run_ranges(n, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const double u = mms_philox_uniform(seed, offset + static_cast<uint64_t>(i));
        out[i] = convert_value<T>(a + (b - a) * u);
      }
    });
  } else {
    // z in double on both backends (see philox.h: float32 results agree to 1 ulp)
    run_ranges(n, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const double z = mms_philox_normal(seed, offset + static_cast<uint64_t>(i));
        out[i] = convert_value<T>(a + b * z);
      }
    });
  }
}

}  // namespace

void CpuBackend::random(RandomKind kind, uint64_t seed, uint64_t offset, double a, double b,
                        Tensor& dst) {
  check_contiguous("random", "destination", dst);
  MMS_CHECK(is_floating(dst.dtype()), "random: dtype ", dtype_name(dst.dtype()),
            " is not floating");
  // bfloat16/float16 are drawn in double and rounded once, like the other floats
  dispatch_all(dst.dtype(), "random", [&](auto tag) {
    using T = typename decltype(tag)::type;
    random_fill<T>(kind, seed, offset, a, b, static_cast<T*>(dst.raw_data()), dst.numel());
  });
}

}  // namespace mms::cpu
