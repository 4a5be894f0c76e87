#include "tensor/storage.h"

#include <string>

#include "tensor/backend.h"
#include "tensor/error.h"
#include "tensor/host_cache.h"

namespace mms {

Device Device::parse(const std::string& text) {
  if (text == "cpu") return Device::cpu();
  if (text == "cuda") return Device::cuda(0);
  if (text.rfind("cuda:", 0) == 0) {
    const std::string digits = text.substr(5);
    MMS_CHECK(!digits.empty() && digits.find_first_not_of("0123456789") == std::string::npos &&
                  digits.size() < 4,
              "device: cannot parse '", text, "' (expected cpu, cuda or cuda:N)");
    return Device::cuda(std::stoi(digits));
  }
  fail("device: cannot parse '", text, "' (expected cpu, cuda or cuda:N)");
}

Storage::Storage(void* data, size_t nbytes, Device device, Deleter deleter, bool read_only)
    : data_(data), nbytes_(nbytes), device_(device), deleter_(std::move(deleter)), read_only_(read_only) {}

Storage::~Storage() {
  if (deleter_ && data_) deleter_(data_);
}

std::shared_ptr<Storage> Storage::allocate(size_t nbytes, Device device) {
  if (device.is_cpu()) {
    size_t capacity = 0;
    void* data = host_allocate(nbytes, &capacity);  // large blocks are reused (host_cache.h)
    return std::make_shared<Storage>(data, nbytes, device,
                                     [capacity](void* p) { host_release(p, capacity); });
  }
  void* data = nbytes == 0 ? nullptr : device_allocate(nbytes, device);
  return std::make_shared<Storage>(data, nbytes, device,
                                   [device](void* p) { device_deallocate(p, device); });
}

}  // namespace mms
