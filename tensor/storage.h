// A block of bytes on one device, shared by every tensor view onto it.
//
// Storage does not know about shapes or dtypes. It owns its bytes through a deleter,
// so the same type holds heap memory, CUDA pool memory and read-only mmap'ed files.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

#include "tensor/device.h"

namespace mms {

class Storage {
 public:
  using Deleter = std::function<void(void*)>;

  Storage(void* data, size_t nbytes, Device device, Deleter deleter, bool read_only = false);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  // Fresh, uninitialised bytes on `device` (64-byte aligned on the host).
  static std::shared_ptr<Storage> allocate(size_t nbytes, Device device);

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  bool read_only() const { return read_only_; }

 private:
  void* data_;
  size_t nbytes_;
  Device device_;
  Deleter deleter_;
  bool read_only_;
};

}  // namespace mms
