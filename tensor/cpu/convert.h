// Value conversion among the eight dtypes, as `copy` and `fill` apply it.
//
//  - bfloat16 / float16 go through float32 (their exact superset);
//  - to bool: nonzero -> true (NaN is nonzero, so true);
//  - floating -> integer truncates toward zero and saturates at the integer's range,
//    NaN -> 0 (C++ leaves out-of-range float->int undefined; we choose to define it);
//  - integer -> integer wraps modulo 2^bits, as static_cast does.
// double -> bfloat16/float16 rounds twice (to float32, then to 16 bits); the double
// rounding can differ from a direct rounding only at exact float32 halfway points.
#pragma once

#include <cmath>
#include <limits>
#include <type_traits>

#include "tensor/dtype.h"

namespace mms::cpu {

template <typename T>
constexpr bool is_half_v = std::is_same_v<T, BFloat16> || std::is_same_v<T, Float16>;

// The value as a type with arithmetic: halves widen to float, others stay as they are.
template <typename From>
auto widen(From value) {
  if constexpr (is_half_v<From>) {
    return static_cast<float>(value);
  } else {
    return value;
  }
}

template <typename To, typename From>
To convert_value(From raw) {
  const auto value = widen(raw);
  using V = decltype(value);
  if constexpr (std::is_same_v<To, V>) {
    return value;
  } else if constexpr (std::is_same_v<To, bool>) {
    return value != V(0);
  } else if constexpr (is_half_v<To>) {
    return To(static_cast<float>(value));
  } else if constexpr (std::is_integral_v<To> && std::is_floating_point_v<V>) {
    if (std::isnan(value)) return To(0);
    const V truncated = std::trunc(value);
    if (truncated <= static_cast<V>(std::numeric_limits<To>::lowest())) {
      return std::numeric_limits<To>::lowest();
    }
    // max() may round up when converted to V (2^63 - 1 -> 2^63), so compare with >=
    if (truncated >= static_cast<V>(std::numeric_limits<To>::max())) {
      return std::numeric_limits<To>::max();
    }
    return static_cast<To>(truncated);
  } else {
    return static_cast<To>(value);
  }
}

}  // namespace mms::cpu
