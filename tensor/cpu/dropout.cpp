// Inverted dropout in one pass: out[i] = x[i] * (u(offset + i) >= p ? 1/(1-p) : 0), with
// u the Philox uniform of cuda/philox.h, so the mask is the one rand(shape, seed, offset)
// would draw, and the CUDA kernel (cuda/dropout.cu) produces the same bits.
//
// Each Philox evaluation gives the four uniforms of stream positions 4b .. 4b+3; the loop
// walks its range block by block and uses all four (rand's CPU fill evaluates Philox once
// per element and keeps one word), so the mask costs a quarter of rand's arithmetic and
// nothing is written but out.
#include "cuda/philox.h"
#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/parallel.h"

namespace mms::cpu {

namespace {

// Elements [begin, end) of a dropout at (seed, offset). threshold = p and scale = 1/(1-p)
// are already rounded to T, and the dropped value is x * 0 (not a literal 0), exactly as
// the old composition mul(x, where(rand >= p, scale, 0)) computed them: -x and NaN/inf
// inputs give the same -0 and NaN.
template <typename T>
void dropout_range(const T* x, T* out, int64_t begin, int64_t end, uint64_t seed,
                   uint64_t offset, T threshold, T scale) {
  int64_t i = begin;
  while (i < end) {
    const uint64_t position = offset + static_cast<uint64_t>(i);  // wraps, like rand
    const MmsPhilox4 words = mms_philox_block(seed, position / 4);
    for (uint64_t lane = position % 4; lane < 4 && i < end; ++lane, ++i) {
      const T u = static_cast<T>(mms_philox_bits_to_uniform(words.x[lane]));
      out[i] = x[i] * (u >= threshold ? scale : T(0));
    }
  }
}

}  // namespace

void CpuBackend::dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset, Tensor& out) {
  check_contiguous("dropout", "input", x);
  check_contiguous("dropout", "output", out);
  MMS_CHECK(x.shape() == out.shape() && x.dtype() == out.dtype(), "dropout: output ",
            shape_str(out.shape()), " ", dtype_name(out.dtype()), " does not match input ",
            shape_str(x.shape()), " ", dtype_name(x.dtype()));
  MMS_CHECK(p >= 0.0 && p <= 1.0, "dropout: probability must be in [0, 1], got ", p);
  const double scale = p < 1.0 ? 1.0 / (1.0 - p) : 0.0;
  dispatch_floating(x.dtype(), "dropout", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* in = static_cast<const T*>(x.raw_data());
    T* res = static_cast<T*>(out.raw_data());
    const int64_t n = x.numel();
    auto body = [&](int64_t begin, int64_t end) {
      dropout_range<T>(in, res, begin, end, seed, offset, static_cast<T>(p),
                       static_cast<T>(scale));
    };
    // ~10 Philox rounds per four elements: count an element as 4 of simple work
    if (parallel_worth_it(n, n * 4)) {
      parallel_ranges(n, parallel_threads(), body);
    } else {
      body(0, n);
    }
  });
}

}  // namespace mms::cpu
