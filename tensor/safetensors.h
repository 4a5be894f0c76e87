// safetensors I/O (https://github.com/huggingface/safetensors), the format of Hugging
// Face checkpoints.
//
// File layout: u64 little-endian N | N bytes of JSON header | data section.
// The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}
// (offsets relative to the data section) and may hold "__metadata__": {str: str}.
//
// Reading maps the file (mmap, read-only, private). Tensors are views into the mapping,
// kept alive by the Storage deleter (munmap runs when the last view dies), and their
// storage is read_only: writing into them is an error (clone() first). The format does
// not promise that a tensor's bytes are aligned to its element size (the header
// length is arbitrary); a tensor whose absolute file offset is not a multiple of its
// item size is copied into a fresh aligned buffer instead of being viewed.
//
// The header is untrusted input. It is rejected with an mms::Error naming the file (and
// the tensor) when: the length prefix is over 100 MB or larger than the file; it is not
// a JSON object; an entry lacks dtype/shape/data_offsets or has the wrong JSON types; a
// dtype is unknown; a shape has negative dims or its byte size overflows; offsets fall
// outside the data section; end - begin != numel * item size; two tensors overlap; a
// name repeats; __metadata__ is not a string -> string object; a BOOL tensor holds a
// byte other than 0 or 1. Gaps between tensors are tolerated (the data is never
// misread); the writer here never leaves any.
//
// Supported dtypes: F64, F32, F16, BF16, I64, I32, U8, BOOL.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace mms {

using TensorMap = std::map<std::string, Tensor>;

struct SafetensorsContents {
  TensorMap tensors;
  std::map<std::string, std::string> metadata;  // the __metadata__ object (may be empty)
};

// Reads every tensor of one file. When floating_dtype is given, floating tensors of
// another dtype are converted to it (fresh writable storage); tensors already of that
// dtype, and non-floating ones, stay read-only views.
TensorMap load_safetensors(const std::string& path,
                           std::optional<DType> floating_dtype = std::nullopt);
SafetensorsContents load_safetensors_with_metadata(const std::string& path);

// Parses a safetensors image already in memory (copied into one aligned buffer that
// the tensors view). `label` names the source in error messages.
SafetensorsContents parse_safetensors(const void* bytes, size_t size, const std::string& label);

// Reads a checkpoint directory: DIR/model.safetensors, or the shards listed in
// DIR/model.safetensors.index.json ("weight_map": {tensor: shard file}). A path to a
// .safetensors file is read directly. Every tensor named in the index must be present
// in its shard, and a name may not appear in two shards.
TensorMap load_safetensors_dir(const std::string& path,
                               std::optional<DType> floating_dtype = std::nullopt);

// Writes tensors (any device, any strides; copied to contiguous host bytes) and
// metadata atomically: a temporary file in the same directory is written, fsync'ed and
// renamed over `path`, so a failed write throws and leaves any old file intact. Data
// is laid out by item size (largest first), then name, so every tensor is aligned;
// the header is padded with spaces to a multiple of 8 bytes. Names must be unique,
// non-empty and not "__metadata__".
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
void save_safetensors(const std::string& path, const TensorMap& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// "F32" <-> DType::Float32, ...; the parser throws on names it does not support.
std::string safetensors_dtype_name(DType dtype);

}  // namespace mms
