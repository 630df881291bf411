#include "io/torch_checkpoint.h"

#include <fstream>
#include <map>
#include <stdexcept>

#include "io/atomic_file.h"
#include "io/pickle.h"
#include "io/torch_state_dict.h"
#include "io/zip_archive.h"

namespace qkv {

namespace {

using Kind = PickleValue::Kind;

// The legacy format's first pickle: the int 0x1950a86a20f9469cfc6c, little-endian.
constexpr char kLegacyMagic[] = "\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";
constexpr int64_t kLegacyVersion = 1001;

NamedTensors read_zip(const std::string& path, const std::string& entry, std::string* picked) {
  ZipArchive zip(path);
  std::string prefix;
  int found = 0;
  for (const auto& name : zip.names()) {
    size_t slash = name.find('/');
    if (slash != std::string::npos && name.substr(slash) == "/data.pkl")
      prefix = name.substr(0, slash + 1), ++found;
  }
  if (found != 1)
    throw std::runtime_error(path + ": a ZIP archive with " + std::to_string(found) +
                             " FOLDER/data.pkl entries: not a torch.save checkpoint");
  if (zip.has(prefix + "byteorder") && zip.read(prefix + "byteorder") != "little")
    throw std::runtime_error(path + ": written on a big-endian machine; qkv reads little-endian");
  TorchStateDictReader reader(path);
  size_t pos = 0;
  PickleRef root = unpickle(zip.read(prefix + "data.pkl"), &pos, reader.hooks(),
                            path + " (" + prefix + "data.pkl)");
  std::map<std::string, std::string> storages;  // each read (and CRC-checked) once
  return reader.tensors(reader.state_dict(root, entry, picked), [&](const std::string& key) {
    auto it = storages.find(key);
    if (it == storages.end()) it = storages.emplace(key, zip.read(prefix + "data/" + key)).first;
    return std::string_view(it->second);
  });
}

NamedTensors read_legacy(const std::string& path, std::string_view bytes, const std::string& entry,
                         std::string* picked) {
  TorchStateDictReader reader(path);
  if (bytes.empty() || uint8_t(bytes[0]) != 0x80)
    reader.fail("neither a ZIP archive nor a pickle: not a torch.save checkpoint");
  size_t pos = 0;
  PickleRef magic = unpickle(bytes, &pos, reader.plain_hooks(), path);
  if (magic->kind != Kind::big_integer || magic->text != std::string(kLegacyMagic, 10))
    reader.fail("neither a ZIP archive nor a legacy torch.save file (no magic number)");
  PickleRef version = unpickle(bytes, &pos, reader.plain_hooks(), path);
  if (version->kind != Kind::integer || version->integer != kLegacyVersion)
    reader.fail("legacy torch.save format version " + version->describe() + "; qkv reads " +
                std::to_string(kLegacyVersion));
  PickleRef sys_info = unpickle(bytes, &pos, reader.plain_hooks(), path);
  for (const auto& [key, value] : sys_info->entries)
    if (key->text == "little_endian" && value->integer == 0)
      reader.fail("written on a big-endian machine; qkv reads little-endian");
  PickleRef root = unpickle(bytes, &pos, reader.hooks(), path);
  PickleRef keys = unpickle(bytes, &pos, reader.plain_hooks(), path);
  if (keys->kind != Kind::list) reader.fail("the storage key list is " + keys->describe());
  std::map<std::string, std::string_view> storages;
  for (const auto& key : keys->items) {
    const size_t element = key->kind == Kind::string ? reader.element_bytes(key->text) : 0;
    if (!element) reader.fail("the storage list names " + key->describe() + " that no tensor uses");
    if (bytes.size() - pos < 8) reader.fail("storage '" + key->text + "' is cut off (truncated?)");
    uint64_t count = 0;
    for (int i = 7; i >= 0; --i) count = (count << 8) | uint8_t(bytes[pos + size_t(i)]);
    pos += 8;
    if (count > (bytes.size() - pos) / element)
      reader.fail("storage '" + key->text + "' is cut off (truncated?)");
    storages[key->text] = bytes.substr(pos, count * element);
    pos += count * element;
  }
  return reader.tensors(reader.state_dict(root, entry, picked), [&](const std::string& key) {
    auto it = storages.find(key);
    if (it == storages.end()) reader.fail("storage '" + key + "' is missing from the file");
    return it->second;
  });
}

bool starts_as_zip(std::string_view head) {
  return head.substr(0, 4) == "PK\x03\x04";
}

// The first 9 bytes of the file at `path` (fewer when it is shorter or cannot be read).
std::string read_head(const std::string& path) {
  char head[9] = {};
  std::ifstream in(path, std::ios::binary);
  in.read(head, sizeof head);
  return std::string(head, size_t(in.gcount()));
}

}  // namespace

NamedTensors load_torch_checkpoint(const std::string& path, const std::string& entry,
                                   std::string* picked) {
  if (starts_as_zip(read_head(path))) return read_zip(path, entry, picked);  // read by entry
  return read_legacy(path, read_file(path, "for reading"), entry, picked);
}

CheckpointFormat sniff_checkpoint_format(const std::string& path) {
  std::string h = read_head(path);
  if (h.size() == 9 && h.substr(4, 4) == std::string_view("\0\0\0\0", 4) && h[8] == '{')
    return CheckpointFormat::safetensors;
  if (starts_as_zip(h) || (!h.empty() && uint8_t(h[0]) == 0x80)) return CheckpointFormat::torch;
  return CheckpointFormat::unknown;
}

}  // namespace qkv