#include "nn/serialize.h"

#include <filesystem>

#include "tensor/safetensors.h"

namespace mms::nn {

void save_module(const Module& module, const std::string& path,
                 const std::map<std::string, std::string>& metadata) {
  save_safetensors(path, module.ordered_state_dict(), metadata);
}

std::map<std::string, std::string> load_module(Module& module, const std::string& path, bool strict) {
  std::map<std::string, std::string> metadata;
  TensorMap tensors;
  if (std::filesystem::is_regular_file(path)) {
    SafetensorsContents contents = load_safetensors_with_metadata(path);
    tensors = std::move(contents.tensors);
    metadata = std::move(contents.metadata);
  } else {
    tensors = load_safetensors_dir(path);
  }
  try {
    module.load_state_dict(tensors, strict);
  } catch (const Error& e) {
    fail("load_module(", path, "): ", e.what());
  }
  return metadata;
}

}  // namespace mms::nn
