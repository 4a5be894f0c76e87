// How each ScalarType is stored and computed on the device, and the conversions between
// them (included only by .cu files). Bool is a byte read as "nonzero"; bf16/f16 are their
// 16-bit patterns computed as float.
#pragma once

#include <type_traits>

#include "cuda/device_utils.cuh"

namespace mms::cuda {

template <ScalarType S> struct TypeTraits;
template <> struct TypeTraits<ScalarType::Float32> {
  using Storage = float; using Compute = float;
  __device__ static Compute load(Storage v) { return v; }
  __device__ static Storage store(Compute v) { return v; }
};
template <> struct TypeTraits<ScalarType::Float64> {
  using Storage = double; using Compute = double;
  __device__ static Compute load(Storage v) { return v; }
  __device__ static Storage store(Compute v) { return v; }
};
template <> struct TypeTraits<ScalarType::BFloat16> {
  using Storage = uint16_t; using Compute = float;
  __device__ static Compute load(Storage v) { return bf16_bits_to_float(v); }
  __device__ static Storage store(Compute v) { return float_to_bf16_bits(v); }
};
template <> struct TypeTraits<ScalarType::Float16> {
  using Storage = uint16_t; using Compute = float;
  __device__ static Compute load(Storage v) { return f16_bits_to_float(v); }
  __device__ static Storage store(Compute v) { return float_to_f16_bits(v); }
};
template <> struct TypeTraits<ScalarType::Int64> {
  using Storage = int64_t; using Compute = int64_t;
  __device__ static Compute load(Storage v) { return v; }
  __device__ static Storage store(Compute v) { return v; }
};
template <> struct TypeTraits<ScalarType::Int32> {
  using Storage = int32_t; using Compute = int32_t;
  __device__ static Compute load(Storage v) { return v; }
  __device__ static Storage store(Compute v) { return v; }
};
template <> struct TypeTraits<ScalarType::UInt8> {
  using Storage = uint8_t; using Compute = uint8_t;
  __device__ static Compute load(Storage v) { return v; }
  __device__ static Storage store(Compute v) { return v; }
};
template <> struct TypeTraits<ScalarType::Bool> {
  using Storage = uint8_t; using Compute = bool;
  __device__ static Compute load(Storage v) { return v != 0; }
  __device__ static Storage store(Compute v) { return v ? 1 : 0; }
};

// Converts a value of one compute type to the compute type of D (bool: nonzero -> true).
template <ScalarType D, typename From>
__device__ __forceinline__ typename TypeTraits<D>::Compute convert_to(From value) {
  using To = typename TypeTraits<D>::Compute;
  if constexpr (D == ScalarType::Bool) {
    return value != From(0);
  } else if constexpr ((D == ScalarType::BFloat16 || D == ScalarType::Float16) &&
                       !std::is_same_v<From, float>) {
    return static_cast<float>(value);  // double/ints pass through float, as on the host
  } else {
    return static_cast<To>(value);
  }
}

// Runs the statements in __VA_ARGS__ with NAME a constexpr ScalarType equal to the
// runtime `type`, so a template can be instantiated for each element type.
#define MMS_CUDA_CASE_TYPE_(NAME, VALUE, ...) \
  case VALUE: {                               \
    constexpr ScalarType NAME = VALUE;        \
    __VA_ARGS__;                              \
    break;                                    \
  }
#define MMS_CUDA_DISPATCH_TYPE(type, NAME, ...)                              \
  switch (type) {                                                            \
    MMS_CUDA_CASE_TYPE_(NAME, ScalarType::Float32, __VA_ARGS__)              \
    MMS_CUDA_CASE_TYPE_(NAME, ScalarType::Float64, __VA_ARGS__)              \
    MMS_CUDA_CASE_TYPE_(NAME, ScalarType::BFloat16, __VA_ARGS__)             \
    MMS_CUDA_CASE_TYPE_(NAME, ScalarType::Float16, __VA_ARGS__)              \
    MMS_CUDA_CASE_TYPE_(NAME, ScalarType::Int64, __VA_ARGS__)                \
    MMS_CUDA_CASE_TYPE_(NAME, ScalarType::Int32, __VA_ARGS__)                \
    MMS_CUDA_CASE_TYPE_(NAME, ScalarType::UInt8, __VA_ARGS__)                \
    MMS_CUDA_CASE_TYPE_(NAME, ScalarType::Bool, __VA_ARGS__)                 \
  }

}  // namespace mms::cuda
