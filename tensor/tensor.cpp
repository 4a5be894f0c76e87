#include "tensor/tensor.h"

#include <cmath>
#include <cstring>
#include <iomanip>
#include <sstream>

#include "tensor/backend.h"
#include "tensor/ops.h"

namespace mms {

std::string shape_str(const Shape& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t step = 1;
  for (int64_t i = static_cast<int64_t>(shape.size()) - 1; i >= 0; --i) {
    strides[i] = step;
    step *= std::max<int64_t>(shape[i], 1);
  }
  return strides;
}

TensorImpl& Tensor::impl() const {
  MMS_CHECK(impl_ != nullptr, "tensor: use of an undefined (empty) Tensor handle");
  return *impl_;
}

int64_t Tensor::size(int64_t d) const { return shape()[ops::wrap_dim(d, dim(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[ops::wrap_dim(d, dim(), "stride")]; }

bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;  // no element to misplace (and contiguous_strides keeps sizes-0 dims' strides)
  int64_t expected = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (shape()[i] == 1) continue;  // the stride of a size-1 dim never matters
    if (strides()[i] != expected) return false;
    expected *= shape()[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  auto* base = static_cast<std::byte*>(storage()->data());
  return base + offset() * static_cast<int64_t>(element_size());
}

Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

Tensor empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t s : shape) MMS_CHECK(s >= 0, "empty: negative size in shape ", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = Storage::allocate(shape_numel(shape) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor out = empty(shape, dtype, device);
  if (out.numel() > 0) backend_for(device).fill(out, value);
  return out;
}
Tensor zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }
Tensor zeros_like(const Tensor& like) { return zeros(like.shape(), like.dtype(), like.device()); }
Tensor ones_like(const Tensor& like) { return ones(like.shape(), like.dtype(), like.device()); }
Tensor full_like(const Tensor& like, double value) {
  return full(like.shape(), value, like.dtype(), like.device());
}
Tensor empty_like(const Tensor& like) { return empty(like.shape(), like.dtype(), like.device()); }
Tensor scalar_tensor(double value, DType dtype, Device device) { return full({}, value, dtype, device); }

Tensor arange(double start, double end, double step, DType dtype, Device device) {
  MMS_CHECK(step != 0.0, "arange: step must be nonzero");
  const double count = std::ceil((end - start) / step);
  const int64_t n = count > 0 ? static_cast<int64_t>(count) : 0;
  Tensor out = empty({n}, dtype, device);
  if (n > 0) backend_for(device).arange(out, start, step);
  return out;
}

Tensor from_blob(const void* data, const Shape& shape, DType dtype, Device device) {
  Tensor host = empty(shape, dtype, Device::cpu());
  if (host.numel() > 0) std::memcpy(host.raw_data(), data, host.numel() * dtype_size(dtype));
  return host.to(device);
}

template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, DType dtype, Device device) {
  MMS_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_vector: ",
            values.size(), " values do not fill shape ", shape_str(shape));
  Tensor typed = empty(shape, DTypeOf<T>::value, Device::cpu());
  if (!values.empty()) {
    if constexpr (std::is_same_v<T, bool>) {
      auto* out = typed.data<bool>();
      for (size_t i = 0; i < values.size(); ++i) out[i] = values[i];
    } else {
      std::memcpy(typed.raw_data(), values.data(), values.size() * sizeof(T));
    }
  }
  return typed.to(dtype).to(device);
}
template Tensor from_vector<float>(const std::vector<float>&, const Shape&, DType, Device);
template Tensor from_vector<double>(const std::vector<double>&, const Shape&, DType, Device);
template Tensor from_vector<int64_t>(const std::vector<int64_t>&, const Shape&, DType, Device);
template Tensor from_vector<int32_t>(const std::vector<int32_t>&, const Shape&, DType, Device);
template Tensor from_vector<uint8_t>(const std::vector<uint8_t>&, const Shape&, DType, Device);
template Tensor from_vector<bool>(const std::vector<bool>&, const Shape&, DType, Device);

Tensor Tensor::to(Device device) const {
  if (this->device() == device) return *this;
  Tensor source = contiguous();
  Tensor out = empty(shape(), dtype(), device);
  if (numel() > 0)
    device_memcpy(out.raw_data(), device, source.raw_data(), source.device(),
                  numel() * element_size());
  return out;
}

Tensor Tensor::to(DType dtype) const {
  if (this->dtype() == dtype) return *this;
  return ops::cast(*this, dtype);
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  if (numel() > 0) backend_for(device()).copy(*this, out);
  return out;
}

double Tensor::item() const {
  MMS_CHECK(numel() == 1, "item: tensor of shape ", shape_str(shape()),
            " has ", numel(), " elements, expected exactly 1");
  Tensor host = to(Device::cpu()).to(DType::Float64).contiguous();
  return *host.data<double>();
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  DType target = DTypeOf<T>::value;
  Tensor host = to(Device::cpu()).contiguous().to(target).contiguous();
  std::vector<T> out(host.numel());
  if constexpr (std::is_same_v<T, bool>) {
    for (int64_t i = 0; i < host.numel(); ++i) out[i] = host.data<bool>()[i];
  } else if (!out.empty()) {
    std::memcpy(out.data(), host.raw_data(), out.size() * sizeof(T));
  }
  return out;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;
template std::vector<bool> Tensor::to_vector<bool>() const;

// Printing: nested brackets like NumPy, with at most 6 entries per dim shown
// (first 3, "...", last 3) so that printing a 768x768 weight stays readable.
namespace {
void print_values(std::ostringstream& os, const std::vector<double>& values, const Shape& shape,
                  size_t dim, int64_t base, int indent, bool integral) {
  const int64_t n = shape[dim];
  int64_t inner = 1;
  for (size_t d = dim + 1; d < shape.size(); ++d) inner *= shape[d];
  os << "[";
  for (int64_t i = 0; i < n; ++i) {
    if (n > 6 && i == 3) {
      os << (dim + 1 == shape.size() ? "..., " : "...,\n" + std::string(indent + 1, ' '));
      i = n - 3;
    }
    if (dim + 1 == shape.size()) {
      const double v = values[base + i];
      if (integral) os << static_cast<int64_t>(v);
      else os << std::setprecision(6) << v;
    } else {
      print_values(os, values, shape, dim + 1, base + i * inner, indent + 1, integral);
    }
    if (i + 1 < n) os << (dim + 1 == shape.size() ? ", " : ",\n" + std::string(indent + 1, ' '));
  }
  os << "]";
}
}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream os;
  os << "Tensor(";
  if (numel() <= 100000) {
    std::vector<double> values = to_vector<double>();
    const bool integral = !is_floating(dtype());
    if (dim() == 0) os << values[0];
    else if (numel() == 0) os << "[]";
    else print_values(os, values, shape(), 0, 0, 7, integral);
    os << ", ";
  }
  os << "shape=" << shape_str(shape()) << ", dtype=" << dtype_name(dtype());
  if (!device().is_cpu()) os << ", device=" << device().str();
  os << ")";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& tensor) { return os << tensor.str(); }

// ---- random factories -------------------------------------------------------------
namespace {
Tensor random_tensor(RandomKind kind, const Shape& shape, double a, double b, uint64_t seed,
                     uint64_t offset, DType dtype, Device device) {
  MMS_CHECK(dtype == DType::Float32 || dtype == DType::Float64, "random: dtype ",
            dtype_name(dtype), " is not supported (use float32 or float64)");
  Tensor out = empty(shape, dtype, device);
  if (out.numel() > 0) backend_for(device).random(kind, seed, offset, a, b, out);
  return out;
}
}  // namespace

Tensor rand(const Shape& shape, uint64_t seed, uint64_t offset, DType dtype, Device device) {
  return random_tensor(RandomKind::Uniform, shape, 0.0, 1.0, seed, offset, dtype, device);
}
Tensor uniform(const Shape& shape, double low, double high, uint64_t seed, uint64_t offset,
               DType dtype, Device device) {
  return random_tensor(RandomKind::Uniform, shape, low, high, seed, offset, dtype, device);
}
Tensor randn(const Shape& shape, uint64_t seed, uint64_t offset, DType dtype, Device device) {
  return random_tensor(RandomKind::Normal, shape, 0.0, 1.0, seed, offset, dtype, device);
}
Tensor normal(const Shape& shape, double mean, double stddev, uint64_t seed, uint64_t offset,
              DType dtype, Device device) {
  return random_tensor(RandomKind::Normal, shape, mean, stddev, seed, offset, dtype, device);
}

uint64_t Generator::reserve(uint64_t count) {
  const uint64_t first = offset_;
  // Normal draws pair elements (2j, 2j+1); keep every reservation even-aligned so a
  // reservation never splits a Box-Muller pair with its neighbour.
  offset_ += count + (count & 1u);
  return first;
}

Generator& default_generator() {
  static Generator generator(0);
  return generator;
}
void manual_seed(uint64_t seed) { default_generator().set_state(seed, 0); }

}  // namespace mms
