// Saving and loading a Module's state dict as one safetensors file.
//
// save_module writes parameters and persistent buffers under their dotted (Hugging
// Face) names, atomically, with string metadata (e.g. {"format": "pt"} so the file
// also loads with safetensors.torch). load_module reads a file or a checkpoint
// directory (model.safetensors or a sharded index) and copies into the module,
// converting dtype and device; strict as Module::load_state_dict.
#pragma once

#include <map>
#include <string>

#include "nn/module.h"

namespace mms::nn {

void save_module(const Module& module, const std::string& path,
                 const std::map<std::string, std::string>& metadata = {{"format", "pt"}});
// Returns the file's __metadata__ (empty for a sharded directory).
std::map<std::string, std::string> load_module(Module& module, const std::string& path, bool strict = true);

}  // namespace mms::nn
