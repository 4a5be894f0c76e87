#include "tensor/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

namespace mms {

namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;  // the Rust reference's limit
constexpr char kMetadataKey[] = "__metadata__";

std::optional<DType> parse_dtype(const std::string& name) {
  if (name == "F64") return DType::Float64;
  if (name == "F32") return DType::Float32;
  if (name == "F16") return DType::Float16;
  if (name == "BF16") return DType::BFloat16;
  if (name == "I64") return DType::Int64;
  if (name == "I32") return DType::Int32;
  if (name == "U8") return DType::UInt8;
  if (name == "BOOL") return DType::Bool;
  return std::nullopt;
}

// A non-negative JSON integer as u64, or nullopt (floats, negatives, strings...).
std::optional<uint64_t> as_u64(const json& value) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  if (value.is_number_integer() && value.get<int64_t>() >= 0)
    return static_cast<uint64_t>(value.get<int64_t>());
  return std::nullopt;
}

std::string errno_text() { return std::strerror(errno); }

// One tensor's validated header entry.
struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;  // relative to the data section
};

// Checks one header entry; `where` is "safetensors: FILE: tensor 'NAME'".
Entry parse_entry(const std::string& name, const json& info, uint64_t data_size, const std::string& where) {
  MMS_CHECK(info.is_object(), where, ": entry must be a JSON object, got ", info.type_name());
  for (const char* key : {"dtype", "shape", "data_offsets"})
    MMS_CHECK(info.contains(key), where, ": missing \"", key, "\"");
  Entry e;
  e.name = name;

  const json& dtype = info["dtype"];
  MMS_CHECK(dtype.is_string(), where, ": dtype must be a string, got ", dtype.type_name());
  std::optional<DType> parsed = parse_dtype(dtype.get<std::string>());
  MMS_CHECK(parsed.has_value(), where, ": unsupported dtype '", dtype.get<std::string>(),
            "' (supported: F64, F32, F16, BF16, I64, I32, U8, BOOL)");
  e.dtype = *parsed;

  const json& shape = info["shape"];
  MMS_CHECK(shape.is_array(), where, ": shape must be an array, got ", shape.type_name());
  MMS_CHECK(shape.size() <= 64, where, ": shape has ", shape.size(), " dims (at most 64)");
  uint64_t numel = 1;
  for (const json& d : shape) {
    std::optional<uint64_t> dim = as_u64(d);
    MMS_CHECK(dim.has_value(), where, ": shape ", shape.dump(), " must hold non-negative integers");
    MMS_CHECK(*dim <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), where,
              ": shape ", shape.dump(), " has a dim too large");
    MMS_CHECK(!__builtin_mul_overflow(numel, *dim, &numel), where, ": shape ", shape.dump(),
              " overflows when multiplied out");
    e.shape.push_back(static_cast<int64_t>(*dim));
  }
  uint64_t nbytes = 0;
  MMS_CHECK(!__builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(e.dtype)), &nbytes) &&
                nbytes <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
            where, ": shape ", shape.dump(), " x ", dtype_size(e.dtype), " bytes overflows");

  const json& offsets = info["data_offsets"];
  MMS_CHECK(offsets.is_array() && offsets.size() == 2, where,
            ": data_offsets must be [begin, end], got ", offsets.dump());
  std::optional<uint64_t> begin = as_u64(offsets[0]), end = as_u64(offsets[1]);
  MMS_CHECK(begin && end, where, ": data_offsets ", offsets.dump(), " must be non-negative integers");
  MMS_CHECK(*begin <= *end && *end <= data_size, where, ": data_offsets [", *begin, ", ", *end,
            "] fall outside the data section of ", data_size, " bytes");
  MMS_CHECK(*end - *begin == nbytes, where, ": data_offsets span ", *end - *begin,
            " bytes but shape ", shape.dump(), " of ", dtype.get<std::string>(), " needs ", nbytes);
  e.begin = *begin;
  e.end = *end;
  return e;
}

// Parses and validates the whole file image. `image` holds the file's bytes from its
// first byte; its base address is aligned to at least 8 (mmap: a page; heap: 64).
SafetensorsContents parse_image(const std::shared_ptr<Storage>& image, size_t size,
                                const std::string& label) {
  const std::string file = "safetensors: " + label;
  const auto* bytes = static_cast<const uint8_t*>(image->data());
  MMS_CHECK(size >= 8, file, ": file is ", size, " bytes, too short for the 8-byte header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];  // little endian
  MMS_CHECK(header_len <= kMaxHeaderBytes, file, ": header length ", header_len,
            " exceeds the 100 MB limit (corrupt or not a safetensors file)");
  MMS_CHECK(header_len <= size - 8, file, ": header length ", header_len, " runs past the end of the ",
            size, "-byte file (truncated?)");
  MMS_CHECK(header_len >= 2, file, ": header length ", header_len, " is too small for a JSON object");

  // Parse, noting duplicate top-level keys (nlohmann would silently keep the last one).
  std::string duplicate;
  std::set<std::string> seen;
  json::parser_callback_t on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && duplicate.empty()) {
      const std::string key = parsed.get<std::string>();
      if (!seen.insert(key).second) duplicate = key;
    }
    return true;
  };
  json header;
  const char* text = reinterpret_cast<const char*>(bytes + 8);
  try {
    header = json::parse(text, text + header_len, on_event);
  } catch (const json::exception& e) {
    fail(file, ": header is not valid JSON: ", e.what());
  }
  MMS_CHECK(header.is_object(), file, ": header must be a JSON object, got ", header.type_name());
  MMS_CHECK(duplicate.empty(), file, ": tensor '", duplicate, "' appears twice in the header");

  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;
  SafetensorsContents out;
  std::vector<Entry> entries;
  for (const auto& [name, info] : header.items()) {
    if (name == kMetadataKey) {
      MMS_CHECK(info.is_object(), file, ": __metadata__ must be an object of strings, got ",
                info.type_name());
      for (const auto& [key, value] : info.items()) {
        MMS_CHECK(value.is_string(), file, ": __metadata__ value of '", key,
                  "' must be a string, got ", value.type_name());
        out.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    MMS_CHECK(!name.empty(), file, ": a tensor has an empty name");
    entries.push_back(parse_entry(name, info, data_size, file + ": tensor '" + name + "'"));
  }

  // No two tensors may share bytes: sorted by (begin, end), each must start at or
  // after the previous end. (Empty tensors occupy nothing and may sit anywhere.)
  std::vector<const Entry*> order;
  for (const Entry& e : entries)
    if (e.end > e.begin) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  for (size_t i = 1; i < order.size(); ++i)
    MMS_CHECK(order[i]->begin >= order[i - 1]->end, file, ": tensor '", order[i]->name,
              "' [", order[i]->begin, ", ", order[i]->end, ") overlaps tensor '", order[i - 1]->name,
              "' [", order[i - 1]->begin, ", ", order[i - 1]->end, ")");

  for (const Entry& e : entries) {
    const uint64_t absolute = data_start + e.begin;
    const size_t nbytes = static_cast<size_t>(e.end - e.begin);
    if (e.dtype == DType::Bool) {
      // A bool byte other than 0/1 is undefined behaviour in C++: reject, don't guess.
      for (size_t i = 0; i < nbytes; ++i)
        MMS_CHECK(bytes[absolute + i] <= 1, file, ": tensor '", e.name, "' (BOOL) holds byte ",
                  static_cast<int>(bytes[absolute + i]), " at element ", i, " (expected 0 or 1)");
    }
    const size_t item = dtype_size(e.dtype);
    auto impl = std::make_shared<TensorImpl>();
    impl->shape = e.shape;
    impl->strides = contiguous_strides(e.shape);
    impl->dtype = e.dtype;
    if (absolute % item == 0) {
      impl->storage = image;  // a view into the mapping
      impl->offset = static_cast<int64_t>(absolute / item);
    } else {
      // Misaligned for its element type: reading it in place would be undefined
      // behaviour (and slow); copy into an aligned buffer.
      impl->storage = Storage::allocate(nbytes, Device::cpu());
      if (nbytes > 0) std::memcpy(impl->storage->data(), bytes + absolute, nbytes);
    }
    out.tensors.emplace(e.name, Tensor(std::move(impl)));
  }
  return out;
}

// Maps a whole file read-only. The returned Storage unmaps it when the last view dies.
std::pair<std::shared_ptr<Storage>, size_t> map_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  MMS_CHECK(fd >= 0, "safetensors: cannot open ", path, ": ", errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const std::string why = errno_text();
    ::close(fd);
    fail("safetensors: cannot stat ", path, ": ", why);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("safetensors: ", path, " is not a regular file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    fail("safetensors: ", path, ": file is ", size, " bytes, too short for the 8-byte header length");
  }
  void* base = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const std::string why = errno_text();
  ::close(fd);  // the mapping stays valid after close
  MMS_CHECK(base != MAP_FAILED, "safetensors: cannot mmap ", path, ": ", why);
  auto storage = std::make_shared<Storage>(base, size, Device::cpu(),
                                           [size](void* p) { ::munmap(p, size); }, /*read_only=*/true);
  return {storage, size};
}

TensorMap convert_floating(TensorMap tensors, std::optional<DType> floating_dtype) {
  if (!floating_dtype) return tensors;
  for (auto& [_, t] : tensors)
    if (is_floating(t.dtype())) t = t.dtype() == *floating_dtype ? t : t.to(*floating_dtype);
  return tensors;
}

void write_all(int fd, const void* data, size_t size, const std::string& path) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    MMS_CHECK(n > 0, "safetensors: writing ", path, " failed: ", errno_text());
    p += n;
    size -= static_cast<size_t>(n);
  }
}

// The header as JSON text. JSON strings are UTF-8: a name or metadata value that is not
// is named here rather than surfacing as the JSON library's bare "incomplete UTF-8".
std::string dump_header(const json& header, const std::vector<std::pair<std::string, Tensor>>& tensors,
                        const std::map<std::string, std::string>& metadata, const std::string& where) {
  try {
    return header.dump();
  } catch (const json::type_error&) {
  }
  auto valid = [](const std::string& text) {
    try {
      (void)json(text).dump();
      return true;
    } catch (const json::type_error&) {
      return false;
    }
  };
  for (const auto& [name, _] : tensors)
    MMS_CHECK(valid(name), where, ": tensor name '", name, "' is not valid UTF-8 (the header is JSON)");
  for (const auto& [key, value] : metadata)
    MMS_CHECK(valid(key) && valid(value), where, ": __metadata__ entry '", key,
              "' is not valid UTF-8 (the header is JSON)");
  fail(where, ": the header cannot be written as JSON");
}

// The file a save is written into before it is renamed over the target. Preferably an
// unnamed one (O_TMPFILE: a process killed mid-write leaves nothing behind, and the
// mode is 0666 minus the umask like any new file), linked under a temporary name only
// once complete; where the filesystem has no unnamed files, a named one from mkstemp.
struct TempFile {
  int fd = -1;
  std::string name;  // empty while unnamed
};

// The process's umask, read without changing it (Linux: /proc/self/status); 077 when
// it cannot be read, so a fallback file is never more open than the user asked.
mode_t current_umask() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Umask:", 0) != 0) continue;
    try {
      return static_cast<mode_t>(std::stoul(line.substr(6), nullptr, 8)) & 0777;
    } catch (const std::logic_error&) {
      break;
    }
  }
  return 077;
}

TempFile open_temp_file(const std::filesystem::path& dir, const std::string& target_name, const std::string& where) {
  TempFile temp;
#ifdef O_TMPFILE
  // Naming the finished file goes through /proc/self/fd: without /proc (a chroot, some
  // sandboxes) an unnamed file could be written but never linked in.
  if (::access("/proc/self/fd", X_OK) == 0) {
    temp.fd = ::open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
    if (temp.fd >= 0) return temp;
  }
#endif
  const mode_t mode = 0666 & ~current_umask();  // read first: nothing below may throw with the file open
  std::string name = (dir / ("." + target_name + ".tmp.XXXXXX")).string();
  temp.fd = ::mkostemp(name.data(), O_CLOEXEC);
  MMS_CHECK(temp.fd >= 0, where, ": cannot create a temporary file in ", dir.string(), ": ", errno_text());
  temp.name = name;
  ::fchmod(temp.fd, mode);  // mkostemp creates 0600
  return temp;
}

// Gives a complete unnamed file a temporary name beside the target (linkat cannot
// replace a file; the rename that follows does, atomically).
std::string link_temp_file(int fd, const std::filesystem::path& dir, const std::string& target_name,
                           const std::string& where) {
  const std::string proc = "/proc/self/fd/" + std::to_string(fd);
  for (int attempt = 0;; ++attempt) {
    const std::string name =
        (dir / ("." + target_name + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(attempt))).string();
    if (::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, name.c_str(), AT_SYMLINK_FOLLOW) == 0) return name;
    MMS_CHECK(errno == EEXIST && attempt < 100, where, ": cannot link the written file into ", dir.string(), ": ",
              errno_text());
  }
}

}  // namespace

std::string safetensors_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::Float64: return "F64";
    case DType::Float32: return "F32";
    case DType::Float16: return "F16";
    case DType::BFloat16: return "BF16";
    case DType::Int64: return "I64";
    case DType::Int32: return "I32";
    case DType::UInt8: return "U8";
    case DType::Bool: return "BOOL";
  }
  fail("safetensors: unknown dtype");
}

SafetensorsContents load_safetensors_with_metadata(const std::string& path) {
  auto [storage, size] = map_file(path);
  return parse_image(storage, size, path);
}

TensorMap load_safetensors(const std::string& path, std::optional<DType> floating_dtype) {
  return convert_floating(load_safetensors_with_metadata(path).tensors, floating_dtype);
}

SafetensorsContents parse_safetensors(const void* bytes, size_t size, const std::string& label) {
  auto storage = Storage::allocate(size, Device::cpu());  // 64-byte aligned
  if (size > 0) std::memcpy(storage->data(), bytes, size);
  return parse_image(storage, size, label);
}

TensorMap load_safetensors_dir(const std::string& path, std::optional<DType> floating_dtype) {
  namespace fs = std::filesystem;
  const fs::path root(path);
  if (fs::is_regular_file(root)) return load_safetensors(path, floating_dtype);
  MMS_CHECK(fs::is_directory(root), "safetensors: ", path, " is neither a file nor a directory");
  const fs::path single = root / "model.safetensors";
  if (fs::exists(single)) return load_safetensors(single.string(), floating_dtype);
  const fs::path index_path = root / "model.safetensors.index.json";
  MMS_CHECK(fs::exists(index_path), "safetensors: ", path,
            " holds neither model.safetensors nor model.safetensors.index.json");

  const std::string where = "safetensors: " + index_path.string();
  std::ifstream in(index_path, std::ios::binary);
  MMS_CHECK(in.good(), where, ": cannot open");
  std::stringstream buffer;
  buffer << in.rdbuf();
  json index;
  try {
    index = json::parse(buffer.str());
  } catch (const json::exception& e) {
    fail(where, ": not valid JSON: ", e.what());
  }
  MMS_CHECK(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(),
            where, ": expected an object with a \"weight_map\" object");

  // shard file -> names the index assigns to it
  std::map<std::string, std::vector<std::string>> shards;
  for (const auto& [name, file] : index["weight_map"].items()) {
    MMS_CHECK(file.is_string(), where, ": weight_map entry '", name, "' must be a file name string");
    const std::string shard = file.get<std::string>();
    // The index is untrusted too: shards must be plain file names inside the directory.
    MMS_CHECK(!shard.empty() && shard.find('/') == std::string::npos &&
                  shard.find('\\') == std::string::npos && shard != "." && shard != "..",
              where, ": tensor '", name, "' points at '", shard, "', not a file name in ", path);
    shards[shard].push_back(name);
  }

  TensorMap out;
  std::map<std::string, std::string> origin;  // tensor -> shard
  for (const auto& [shard, names] : shards) {
    const std::string shard_path = (root / shard).string();
    TensorMap tensors = load_safetensors(shard_path);
    for (const std::string& name : names)
      MMS_CHECK(tensors.count(name), where, ": tensor '", name, "' is listed in shard ", shard,
                " but the shard does not hold it");
    for (auto& [name, tensor] : tensors) {
      auto [it, inserted] = origin.emplace(name, shard);
      MMS_CHECK(inserted, "safetensors: tensor '", name, "' appears in both ", it->second, " and ",
                shard, " under ", path);
      out.emplace(name, tensor);
    }
  }
  return convert_floating(std::move(out), floating_dtype);
}

void save_safetensors(const std::string& path, const TensorMap& tensors,
                      const std::map<std::string, std::string>& metadata) {
  save_safetensors(path, std::vector<std::pair<std::string, Tensor>>(tensors.begin(), tensors.end()),
                   metadata);
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  const std::string where = "safetensors: " + path;
  // Validate and gather contiguous host copies first: nothing touches disk on bad input.
  std::set<std::string> names;
  std::vector<std::pair<std::string, Tensor>> host;
  for (const auto& [name, tensor] : tensors) {
    MMS_CHECK(!name.empty() && name != kMetadataKey, where, ": invalid tensor name '", name, "'");
    MMS_CHECK(names.insert(name).second, where, ": tensor '", name, "' given twice");
    MMS_CHECK(tensor.defined(), where, ": tensor '", name, "' is undefined");
    host.emplace_back(name, tensor.detach().to(Device::cpu()).contiguous());
  }
  // Largest items first, then by name: every offset stays a multiple of its item size.
  std::stable_sort(host.begin(), host.end(), [](const auto& a, const auto& b) {
    if (a.second.element_size() != b.second.element_size())
      return a.second.element_size() > b.second.element_size();
    return a.first < b.first;
  });

  json header = json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : host) {
    const uint64_t nbytes = static_cast<uint64_t>(t.numel()) * t.element_size();
    header[name] = {{"dtype", safetensors_dtype_name(t.dtype())},
                    {"shape", t.shape()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string text = dump_header(header, host, metadata, where);
  text.append((8 - text.size() % 8) % 8, ' ');
  // The reader refuses longer headers; refusing here keeps a file from being written that
  // no reader (ours or the Rust reference) would open.
  MMS_CHECK(text.size() <= kMaxHeaderBytes, where, ": the header would be ", text.size(),
            " bytes, over the format's 100 MB limit (too many tensors, or metadata too large)");
  uint8_t prefix[8];
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<uint8_t>((uint64_t(text.size()) >> (8 * i)) & 0xff);

  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  TempFile temp = open_temp_file(dir, target.filename().string(), where);
  bool open = true;
  try {
    write_all(temp.fd, prefix, 8, path);
    write_all(temp.fd, text.data(), text.size(), path);
    for (const auto& [name, t] : host)
      if (t.numel() > 0) write_all(temp.fd, t.raw_data(), static_cast<size_t>(t.numel()) * t.element_size(), path);
    MMS_CHECK(::fsync(temp.fd) == 0, where, ": fsync failed: ", errno_text());
    if (temp.name.empty()) temp.name = link_temp_file(temp.fd, dir, target.filename().string(), where);
    open = false;
    MMS_CHECK(::close(temp.fd) == 0, where, ": close failed: ", errno_text());
  } catch (...) {
    if (open) ::close(temp.fd);
    if (!temp.name.empty()) ::unlink(temp.name.c_str());
    throw;
  }
  if (::rename(temp.name.c_str(), path.c_str()) != 0) {
    const std::string why = errno_text();
    ::unlink(temp.name.c_str());
    fail(where, ": cannot rename the temporary file into place: ", why);
  }
  // Make the rename itself durable.
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

}  // namespace mms
