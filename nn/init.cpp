#include "nn/init.h"

namespace mms::nn {

Tensor init_normal(const Shape& shape, double stddev, Generator& generator) {
  // Box-Muller consumes values in pairs; reserve an even count so consecutive draws
  // never share a pair.
  const uint64_t count = static_cast<uint64_t>(shape_numel(shape));
  const uint64_t offset = generator.reserve(count + (count & 1u));
  return normal(shape, 0.0, stddev, generator.seed(), offset, DType::Float32);
}

}  // namespace mms::nn
