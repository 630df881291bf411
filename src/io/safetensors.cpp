#include "io/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "io/atomic_file.h"

namespace qkv {

namespace {
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the limit the reference implementation uses

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": not a valid safetensors file: " + what);
}

struct File {
  FILE* f;
  explicit File(const std::string& path, const char* mode) : f(std::fopen(path.c_str(), mode)) {}
  ~File() {
    if (f) std::fclose(f);
  }
};

uint64_t file_size(FILE* f) {
  std::fseek(f, 0, SEEK_END);
  long size = std::ftell(f);
  std::fseek(f, 0, SEEK_SET);
  return size < 0 ? 0 : uint64_t(size);
}

uint64_t read_u64_le(const unsigned char* b) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | b[i];
  return v;
}

SafetensorsEntry parse_entry(const std::string& path, const std::string& name,
                             const nlohmann::json& j) {
  if (!j.is_object()) fail(path, "entry '" + name + "' is not an object");
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!j.contains(key)) fail(path, "entry '" + name + "' has no '" + key + "'");
  SafetensorsEntry e;
  e.name = name;
  if (!j["dtype"].is_string()) fail(path, "entry '" + name + "': dtype is not a string");
  try {
    e.dtype = dtype_from_name(j["dtype"].get<std::string>());
  } catch (const std::exception& ex) {
    fail(path, "entry '" + name + "': " + ex.what());
  }
  if (!j["shape"].is_array()) fail(path, "entry '" + name + "': shape is not a list");
  uint64_t numel = 1;
  for (const auto& d : j["shape"]) {
    if (!d.is_number_unsigned()) fail(path, "entry '" + name + "': a dimension is not a size");
    uint64_t v = d.get<uint64_t>();
    if (v > 0 && numel > (uint64_t(1) << 62) / v)
      fail(path, "entry '" + name + "': shape overflows");
    numel *= v;
    e.shape.push_back(int64_t(v));
  }
  const auto& off = j["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
      !off[1].is_number_unsigned())
    fail(path, "entry '" + name + "': data_offsets is not [begin, end]");
  e.begin = off[0].get<uint64_t>();
  e.end = off[1].get<uint64_t>();
  if (e.end < e.begin) fail(path, "entry '" + name + "': data_offsets end before begin");
  if (e.end - e.begin != numel * dtype_size(e.dtype))
    fail(path, "entry '" + name + "': " + std::to_string(e.end - e.begin) + " bytes for shape " +
                   shape_str(e.shape) + " of " + dtype_name(e.dtype) + " (expected " +
                   std::to_string(numel * dtype_size(e.dtype)) + ")");
  return e;
}

SafetensorsHeader read_header(const std::string& path, FILE* f) {
  uint64_t size = file_size(f);
  if (size < 8)
    fail(path, "shorter than the 8-byte header length (" + std::to_string(size) + " bytes)");
  unsigned char len_bytes[8];
  if (std::fread(len_bytes, 1, 8, f) != 8) fail(path, "cannot read the header length");
  SafetensorsHeader h;
  h.header_bytes = read_u64_le(len_bytes);
  if (h.header_bytes > kMaxHeaderBytes)
    fail(path, "header length " + std::to_string(h.header_bytes) + " is over 100 MB");
  if (h.header_bytes > size - 8)
    fail(path, "header length " + std::to_string(h.header_bytes) + " is larger than the file (" +
                   std::to_string(size) + " bytes)");
  std::string text(h.header_bytes, '\0');
  if (std::fread(text.data(), 1, text.size(), f) != text.size())
    fail(path, "cannot read the header");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& ex) {
    fail(path, std::string("header is not JSON: ") + ex.what());
  }
  if (!j.is_object()) fail(path, "header is not a JSON object");
  h.data_bytes = size - 8 - h.header_bytes;
  for (const auto& [key, value] : j.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) fail(path, "__metadata__ is not an object");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) fail(path, "__metadata__ value of '" + mk + "' is not a string");
        h.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    h.entries.push_back(parse_entry(path, key, value));
  }
  std::sort(h.entries.begin(), h.entries.end(), [](const auto& a, const auto& b) {
    return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
  });
  uint64_t expected = 0;
  for (const auto& e : h.entries) {
    if (e.end > h.data_bytes)
      fail(path, "tensor '" + e.name + "' ends at byte " + std::to_string(e.end) +
                     " of a data section of " + std::to_string(h.data_bytes) +
                     " bytes (truncated file?)");
    if (e.begin != expected)
      fail(path, "tensor '" + e.name + "' starts at byte " + std::to_string(e.begin) +
                     ", expected " + std::to_string(expected) + " (overlap or hole)");
    expected = e.end;
  }
  return h;
}
}  // namespace

SafetensorsHeader read_safetensors_header(const std::string& path) {
  File file(path, "rb");
  if (!file.f) throw std::runtime_error(path + ": cannot open for reading");
  return read_header(path, file.f);
}

NamedTensors load_safetensors(const std::string& path, Metadata* metadata) {
  File file(path, "rb");
  if (!file.f) throw std::runtime_error(path + ": cannot open for reading");
  SafetensorsHeader h = read_header(path, file.f);
  if (metadata) *metadata = h.metadata;
  NamedTensors out;
  for (const auto& e : h.entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    if (std::fseek(file.f, long(8 + h.header_bytes + e.begin), SEEK_SET) != 0 ||
        std::fread(t.raw(), 1, t.nbytes(), file.f) != t.nbytes())
      fail(path, "cannot read the data of '" + e.name + "'");
    out.emplace_back(e.name, std::move(t));
  }
  return out;
}

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const Metadata& metadata) {
  nlohmann::json j = nlohmann::json::object();
  if (!metadata.empty()) j["__metadata__"] = metadata;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__" || !names.insert(name).second)
      throw std::invalid_argument("save_safetensors: duplicate or reserved tensor name '" + name +
                                  "'");
    j[name] = {{"dtype", dtype_name(t.dtype())},
               {"shape", t.shape()},
               {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string header = j.dump();
  header.append((8 - header.size() % 8) % 8, ' ');  // keeps the data 8-byte aligned
  AtomicFile out(path);
  unsigned char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = (uint64_t(header.size()) >> (8 * i)) & 0xff;
  out.write(len_bytes, 8);
  out.write(header.data(), header.size());
  for (const auto& [name, t] : tensors) {
    Tensor host = t.to(Device::cpu);
    out.write(host.raw(), host.nbytes());
  }
  out.commit();
}

}  // namespace qkv
