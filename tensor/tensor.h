// Tensor: a typed, strided view onto a Storage.
//
// A Tensor is a cheap handle (one shared_ptr). Copying it aliases the same data; use
// clone() for a deep copy. Views (reshape, permute, narrow, expand, ...) share the
// storage and change only shape/strides/offset. They live in tensor/view.h as raw
// functions and in autograd/ as differentiable ones.
//
// tensor/ knows nothing of gradients: a TensorImpl only carries an opaque pointer that
// the autograd layer fills in. The autograd-facing members of Tensor (requires_grad,
// grad, backward) are declared here and defined in autograd/tensor_autograd.cpp.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "tensor/device.h"
#include "tensor/dtype.h"
#include "tensor/error.h"
#include "tensor/storage.h"

namespace mms {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& shape);  // "[2, 3]"
int64_t shape_numel(const Shape& shape);
Shape contiguous_strides(const Shape& shape);

struct AutogradMeta;  // defined in autograd/

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;       // in elements
  int64_t offset = 0;  // in elements
  DType dtype = DType::Float32;
  std::shared_ptr<AutogradMeta> autograd;  // null until autograd touches the tensor
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- metadata -------------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Shape& strides() const { return impl().strides; }
  int64_t offset() const { return impl().offset; }
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t size(int64_t d) const;    // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t numel() const { return shape_numel(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  size_t element_size() const { return dtype_size(dtype()); }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }
  TensorImpl& impl() const;
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same_impl(const Tensor& other) const { return impl_ == other.impl_; }

  // ---- data -----------------------------------------------------------------------
  // Address of element 0 of this view (storage base + offset).
  void* raw_data() const;
  template <typename T>
  T* data() const {
    MMS_CHECK(dtype() == DTypeOf<T>::value, "data<T>: tensor is ", dtype_name(dtype()),
              " but ", dtype_name(DTypeOf<T>::value), " was requested");
    return static_cast<T*>(raw_data());
  }
  // The single value of a one-element tensor, copied to the host.
  double item() const;
  template <typename T>
  T item() const { return static_cast<T>(item()); }
  // All values, converted to T, in row-major order, copied to the host.
  template <typename T>
  std::vector<T> to_vector() const;

  // ---- conversions (raw: no gradient) --------------------------------------------
  Tensor to(Device device) const;     // returns *this when already there
  Tensor to(DType dtype) const;       // returns *this when already that type
  Tensor contiguous() const;          // returns *this when already contiguous
  Tensor clone() const;               // a contiguous deep copy

  std::string str() const;            // readable printing (values elided when large)

  // ---- autograd (defined in autograd/) -------------------------------------------
  bool requires_grad() const;
  Tensor& set_requires_grad(bool enabled = true);
  Tensor grad() const;                // undefined Tensor when none has been computed
  void set_grad(const Tensor& grad);  // pass Tensor() to clear
  void zero_grad() { set_grad(Tensor()); }
  bool is_leaf() const;
  void backward() const;              // scalar tensors only
  void backward(const Tensor& upstream, bool retain_graph = false) const;
  Tensor detach() const;              // same data, cut from the graph

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& tensor);

// Make a tensor from an existing view description (shares storage).
Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset);
// Fresh, uninitialised, contiguous.
Tensor empty(const Shape& shape, DType dtype = DType::Float32, Device device = Device::cpu());

// ---- factories --------------------------------------------------------------------
Tensor zeros(const Shape& shape, DType dtype = DType::Float32, Device device = Device::cpu());
Tensor ones(const Shape& shape, DType dtype = DType::Float32, Device device = Device::cpu());
Tensor full(const Shape& shape, double value, DType dtype = DType::Float32,
            Device device = Device::cpu());
Tensor zeros_like(const Tensor& like);
Tensor ones_like(const Tensor& like);
Tensor full_like(const Tensor& like, double value);
Tensor empty_like(const Tensor& like);
Tensor scalar_tensor(double value, DType dtype = DType::Float32, Device device = Device::cpu());
// [start, end) in steps of `step`.
Tensor arange(double start, double end, double step = 1.0, DType dtype = DType::Int64,
              Device device = Device::cpu());
// Copies host values into a new tensor; values.size() must equal the shape's numel.
template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, DType dtype = DTypeOf<T>::value,
                   Device device = Device::cpu());
// Copies `nbytes` of raw host bytes laid out contiguously in `dtype`.
Tensor from_blob(const void* data, const Shape& shape, DType dtype, Device device = Device::cpu());

// Random factories draw from a counter-based (Philox-4x32-10) stream: the value at
// flat position i depends only on (seed, offset + i), so CPU and CUDA give the same
// numbers and any slice of the stream can be reproduced.
Tensor rand(const Shape& shape, uint64_t seed, uint64_t offset = 0, DType dtype = DType::Float32,
            Device device = Device::cpu());  // uniform [0, 1)
Tensor uniform(const Shape& shape, double low, double high, uint64_t seed, uint64_t offset = 0,
               DType dtype = DType::Float32, Device device = Device::cpu());
Tensor randn(const Shape& shape, uint64_t seed, uint64_t offset = 0, DType dtype = DType::Float32,
             Device device = Device::cpu());  // standard normal
Tensor normal(const Shape& shape, double mean, double stddev, uint64_t seed, uint64_t offset = 0,
              DType dtype = DType::Float32, Device device = Device::cpu());

// A process-wide generator for code that just wants "the next random numbers":
// it hands out (seed, offset) ranges so repeated calls never overlap.
class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) { seed_ = seed; offset_ = offset; }
  // Reserves `count` values and returns the offset of the first one.
  uint64_t reserve(uint64_t count);

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
};
Generator& default_generator();
void manual_seed(uint64_t seed);

}  // namespace mms
