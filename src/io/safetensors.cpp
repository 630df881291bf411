#include "io/safetensors.h"

#include <sys/stat.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <tuple>

#include "io/atomic_file.h"

namespace qkv {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; qkv copies it to memory unchanged");

namespace {
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the limit the reference implementation uses
// The largest tensor byte count accepted: keeps numel * dtype_size from overflowing uint64 and
// every dimension within int64.
constexpr uint64_t kMaxTensorBytes = uint64_t(1) << 62;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": not a valid safetensors file: " + what);
}

// Names and strings from the file, quoted with control characters escaped, so that an error
// message stays one line whatever the file holds.
std::string quoted(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

struct InputFile {
  FILE* f;
  uint64_t size = 0;
  explicit InputFile(const std::string& path) : f(std::fopen(path.c_str(), "rb")) {
    if (!f) throw std::runtime_error(path + ": cannot open for reading: " + std::strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
      std::fclose(f);
      throw std::runtime_error(path + ": not a regular file");
    }
    size = uint64_t(st.st_size);
  }
  ~InputFile() { std::fclose(f); }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;
};

uint64_t read_u64_le(const unsigned char* b) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | b[i];
  return v;
}

SafetensorsEntry parse_entry(const std::string& path, const std::string& name,
                             const nlohmann::json& j) {
  std::string what = "tensor " + quoted(name);
  if (!j.is_object()) fail(path, what + " is not an object");
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!j.contains(key)) fail(path, what + " has no \"" + key + "\"");
  SafetensorsEntry e;
  e.name = name;
  const auto& dtype = j["dtype"];
  if (!dtype.is_string()) fail(path, what + ": dtype is not a string");
  try {
    e.dtype = dtype_from_name(dtype.get<std::string>());
  } catch (const std::runtime_error&) {
    fail(path, what + ": unsupported dtype " + quoted(dtype.get<std::string>()) +
                   " (qkv reads F32, F16, BF16, I32, I64, U8 and I8)");
  }
  if (!j["shape"].is_array()) fail(path, what + ": shape is not a list");
  // The product of the non-zero dimensions stays under kMaxTensorBytes, so shape_numel() can
  // never overflow, whatever zeros the shape holds.
  uint64_t nonzero_product = 1;
  bool has_zero = false;
  for (const auto& d : j["shape"]) {
    if (d.is_number_integer() && !d.is_number_unsigned())
      fail(path, what + ": negative dimension " + d.dump() + " in shape " + j["shape"].dump());
    if (!d.is_number_unsigned())
      fail(path, what + ": dimension " + d.dump() + " is not a non-negative integer");
    uint64_t v = d.get<uint64_t>();
    if (v == 0) has_zero = true;
    if (v > 0 && nonzero_product > kMaxTensorBytes / v)
      fail(path, what + ": shape " + j["shape"].dump() + " is too large");
    if (v > 0) nonzero_product *= v;
    e.shape.push_back(int64_t(v));
  }
  uint64_t numel = has_zero ? 0 : nonzero_product;
  if (numel > kMaxTensorBytes / dtype_size(e.dtype))
    fail(path,
         what + ": shape " + shape_str(e.shape) + " of " + dtype_name(e.dtype) + " is too large");
  uint64_t nbytes = numel * dtype_size(e.dtype);
  const auto& off = j["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
      !off[1].is_number_unsigned())
    fail(path, what + ": data_offsets is not [begin, end] of non-negative integers");
  e.begin = off[0].get<uint64_t>();
  e.end = off[1].get<uint64_t>();
  if (e.end < e.begin) fail(path, what + ": data_offsets " + off.dump() + " end before they begin");
  if (e.end - e.begin != nbytes)
    fail(path, what + ": data_offsets " + off.dump() + " span " + std::to_string(e.end - e.begin) +
                   " bytes, but shape " + shape_str(e.shape) + " of " + dtype_name(e.dtype) +
                   " needs " + std::to_string(nbytes));
  return e;
}

SafetensorsHeader read_header(const std::string& path, const InputFile& file) {
  uint64_t size = file.size;
  if (size < 8)
    fail(path, "shorter than the 8-byte header length (" + std::to_string(size) + " bytes)");
  unsigned char len_bytes[8];
  if (std::fread(len_bytes, 1, 8, file.f) != 8) fail(path, "cannot read the header length");
  SafetensorsHeader h;
  h.header_bytes = read_u64_le(len_bytes);
  if (h.header_bytes > size - 8)
    fail(path, "header length " + std::to_string(h.header_bytes) + " is larger than the file (" +
                   std::to_string(size) + " bytes)");
  if (h.header_bytes > kMaxHeaderBytes)
    fail(path, "header length " + std::to_string(h.header_bytes) + " is over 100 MB");
  std::string text(h.header_bytes, '\0');
  if (std::fread(text.data(), 1, text.size(), file.f) != text.size())
    fail(path, "cannot read the header");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& ex) {
    fail(path, std::string("header is not JSON: ") + ex.what());
  }
  if (!j.is_object())
    fail(path, "header is not a JSON object (found " + std::string(j.type_name()) + ")");
  h.data_bytes = size - 8 - h.header_bytes;
  for (const auto& [key, value] : j.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) fail(path, "__metadata__ is not an object");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string())
          fail(path, "__metadata__ value of " + quoted(mk) + " is not a string (found " +
                         mv.type_name() + ")");
        h.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    h.entries.push_back(parse_entry(path, key, value));
  }
  std::sort(h.entries.begin(), h.entries.end(), [](const auto& a, const auto& b) {
    return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
  });
  // The tensors must tile the data section exactly: no overlap, no hole, nothing past the end.
  uint64_t expected = 0;
  for (const auto& e : h.entries) {
    if (e.begin != expected)
      fail(path, "tensor " + quoted(e.name) + " starts at byte " + std::to_string(e.begin) +
                     " of the data section, expected " + std::to_string(expected) + " (" +
                     (e.begin < expected ? "overlaps the tensor before it)" : "leaves a hole)"));
    if (e.end > h.data_bytes)
      fail(path, "tensor " + quoted(e.name) + " ends at byte " + std::to_string(e.end) +
                     " of a data section of " + std::to_string(h.data_bytes) +
                     " bytes (truncated file?)");
    expected = e.end;
  }
  if (expected != h.data_bytes)
    fail(path, std::to_string(h.data_bytes - expected) +
                   " bytes follow the last tensor (the data section must end where it ends)");
  return h;
}
}  // namespace

SafetensorsHeader read_safetensors_header(const std::string& path) {
  InputFile file(path);
  return read_header(path, file);
}

NamedTensors load_safetensors(const std::string& path, Metadata* metadata) {
  InputFile file(path);
  SafetensorsHeader h = read_header(path, file);
  if (metadata) *metadata = h.metadata;
  // The entries tile the data section in order, so the data is one sequential read from here.
  NamedTensors out;
  for (const auto& e : h.entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    if (std::fread(t.raw(), 1, t.nbytes(), file.f) != t.nbytes())
      fail(path, "cannot read the data of tensor " + quoted(e.name) + " (file changed?)");
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
    if (!t.defined())
      throw std::invalid_argument("save_safetensors: tensor '" + name + "' is undefined");
    j[name] = {{"dtype", dtype_name(t.dtype())},
               {"shape", t.shape()},
               {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string header;
  try {
    header = j.dump();
  } catch (const nlohmann::json::type_error& ex) {
    throw std::invalid_argument(std::string("save_safetensors: a name or metadata string is "
                                            "not valid UTF-8: ") +
                                ex.what());
  }
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
