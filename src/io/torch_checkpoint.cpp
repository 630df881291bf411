#include "io/torch_checkpoint.h"

#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <stdexcept>

#include "io/atomic_file.h"
#include "io/pickle.h"
#include "io/zip_archive.h"

namespace qkv {

namespace {

using Kind = PickleValue::Kind;

struct StorageType {
  const char* global;
  DType dtype;        // of the tensors qkv makes from it
  size_t file_bytes;  // per element in the file
};

constexpr StorageType kStorageTypes[] = {
    {"torch.FloatStorage", DType::f32, 4},     {"torch.HalfStorage", DType::f16, 2},
    {"torch.BFloat16Storage", DType::bf16, 2}, {"torch.DoubleStorage", DType::f32, 8},
    {"torch.LongStorage", DType::i64, 8},      {"torch.IntStorage", DType::i32, 4},
    {"torch.ByteStorage", DType::u8, 1},       {"torch.BoolStorage", DType::u8, 1}};

// A storage as its persistent id names it. Legacy views select `numel` elements from
// `view_offset` on of their root storage `key`.
struct StorageRef {
  std::string key;
  const StorageType* type;
  int64_t numel;
  int64_t view_offset = 0;
};

// What _rebuild_tensor_v2 describes: elements of a storage at offset + sum(index * stride).
struct TensorRef {
  std::shared_ptr<StorageRef> storage;
  int64_t offset;
  Shape size, stride;
};

// The legacy format's first pickle: the int 0x1950a86a20f9469cfc6c, little-endian.
constexpr char kLegacyMagic[] = "\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";
constexpr int64_t kLegacyVersion = 1001;

class Reader {
 public:
  explicit Reader(std::string path) : path_(std::move(path)) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error(path_ + ": " + what);
  }

  PickleHooks hooks() {
    return {
        [this](const PickleRef& pid) { return load_storage(pid); },
        [this](const std::string& global, const PickleRef& args) { return call(global, args); }};
  }
  // Hooks for the legacy format's header pickles, which hold no storages or calls.
  PickleHooks plain_hooks() const {
    return {[this](const PickleRef&) -> PickleRef { fail("a storage in a header pickle"); },
            [this](const std::string& global, const PickleRef&) -> PickleRef {
              fail("a header pickle calls " + global);
            }};
  }

  const StorageType* type_of(const std::string& key) const {
    auto it = types_.find(key);
    return it == types_.end() ? nullptr : it->second;
  }

  // The state dict in `root` (see load_torch_checkpoint).
  PickleRef state_dict(const PickleRef& root, const std::string& entry, std::string* picked) const;
  // The tensors of the state dict `dict`; `storage_bytes(key)` gives a storage's bytes.
  NamedTensors tensors(const PickleRef& dict,
                       const std::function<std::string_view(const std::string&)>& storage_bytes);

 private:
  int64_t integer(const PickleRef& v, const std::string& what) const {
    if (v->kind != Kind::integer) fail(what + " is " + v->describe() + ", not an int");
    return v->integer;
  }
  Shape shape(const PickleRef& v, const std::string& what) const {
    if (v->kind != Kind::tuple) fail(what + " is " + v->describe() + ", not a tuple");
    Shape s;
    for (const auto& item : v->items) {
      s.push_back(integer(item, what));
      if (s.back() < 0) fail(what + " holds " + std::to_string(s.back()));
    }
    return s;
  }
  PickleRef load_storage(const PickleRef& pid);
  PickleRef call(const std::string& global, const PickleRef& args);
  Tensor materialize(const std::string& name, const TensorRef& t, std::string_view bytes) const;

  std::string path_;
  std::map<std::string, const StorageType*> types_;  // storage key -> its type
};

PickleRef Reader::load_storage(const PickleRef& pid) {
  const auto& f = pid->items;
  if (pid->kind != Kind::tuple || f.size() < 5 || f[0]->kind != Kind::string ||
      f[0]->text != "storage" || f[1]->kind != Kind::global || f[2]->kind != Kind::string)
    fail("a persistent id that is not ('storage', type, key, location, size)");
  const StorageType* type = nullptr;
  for (const auto& t : kStorageTypes)
    if (f[1]->text == t.global) type = &t;
  if (!type)
    fail("storage type " + f[1]->text +
         " is not one qkv reads (float32, float16, bfloat16, float64, int64, int32, uint8, bool)");
  auto ref = std::make_shared<StorageRef>(StorageRef{f[2]->text, type, integer(f[4], "a size")});
  if (ref->numel < 0) fail("storage '" + ref->key + "' has a negative size");
  if (f.size() > 5 && f[5]->kind != Kind::none) {  // legacy view: (view key, offset, size)
    const auto& v = f[5]->items;
    if (f[5]->kind != Kind::tuple || v.size() != 3) fail("a storage view that is not a triple");
    int64_t offset = integer(v[1], "a view offset"), size = integer(v[2], "a view size");
    if (offset < 0 || size < 0 || offset > ref->numel || size > ref->numel - offset)
      fail("a view of storage '" + ref->key + "' reaches past it");
    ref->view_offset = offset, ref->numel = size;
  }
  auto [it, inserted] = types_.emplace(ref->key, type);
  if (!inserted && it->second != type) fail("storage '" + ref->key + "' is read as two types");
  PickleRef out = make_pickle_value(Kind::object);
  out->object = ref, out->object_type = "storage";
  return out;
}

PickleRef Reader::call(const std::string& global, const PickleRef& args) {
  const auto& a = args->items;
  if (global == "collections.OrderedDict" && a.empty()) return make_pickle_value(Kind::dict);
  if (global == "torch._utils._rebuild_tensor_v2" || global == "torch._utils._rebuild_tensor") {
    if (a.size() < 4 || a[0]->kind != Kind::object || a[0]->object_type != "storage")
      fail(global + " without (storage, offset, size, stride)");
    auto t = std::make_shared<TensorRef>();
    t->storage = std::static_pointer_cast<StorageRef>(a[0]->object);
    t->offset = integer(a[1], "a tensor's storage offset");
    t->size = shape(a[2], "a tensor's size");
    t->stride = shape(a[3], "a tensor's stride");
    if (t->offset < 0 || t->size.size() != t->stride.size())
      fail("a tensor with offset " + std::to_string(t->offset) + ", size " + shape_str(t->size) +
           " and stride " + shape_str(t->stride));
    PickleRef out = make_pickle_value(Kind::object);
    out->object = t, out->object_type = "tensor";
    return out;
  }
  if (global == "torch._utils._rebuild_parameter" ||
      global == "torch._utils._rebuild_parameter_with_state") {
    if (a.empty() || a[0]->kind != Kind::object || a[0]->object_type != "tensor")
      fail(global + " without a tensor");
    return a[0];  // a Parameter is its tensor here
  }
  fail("the checkpoint calls " + global +
       ", which qkv does not run: it reads tensors only, as torch.save(model.state_dict(), ...) "
       "writes them");
}

Tensor Reader::materialize(const std::string& name, const TensorRef& t,
                           std::string_view bytes) const {
  const StorageRef& s = *t.storage;
  const size_t eb = s.type->file_bytes;
  using Wide = unsigned __int128;  // sizes and extents cannot overflow in it
  if (Wide(s.view_offset + s.numel) * eb > bytes.size())
    fail("storage '" + s.key + "' holds " + std::to_string(bytes.size()) +
         " bytes, fewer than its " + std::to_string(s.view_offset + s.numel) +
         " elements need (truncated file?)");
  Wide numel = 1, last = Wide(t.offset);
  for (size_t d = 0; d < t.size.size(); ++d) {
    numel *= Wide(t.size[d]);
    if (numel > (Wide(1) << 62)) fail("tensor '" + name + "' is too large");
    if (t.size[d] > 0) last += Wide(t.size[d] - 1) * Wide(t.stride[d]);
  }
  if (numel > 0 && last >= Wide(s.numel))
    fail("tensor '" + name + "' (offset " + std::to_string(t.offset) + ", size " +
         shape_str(t.size) + ", stride " + shape_str(t.stride) + ") reaches past its storage of " +
         std::to_string(s.numel) + " elements");
  Tensor out = Tensor::empty(t.size, s.type->dtype);
  if (numel == 0) return out;
  const char* base = bytes.data() + (s.view_offset + t.offset) * int64_t(eb);
  const size_t nd = t.size.size();
  const int64_t inner = nd ? t.size[nd - 1] : 1, inner_stride = nd ? t.stride[nd - 1] : 1;
  const bool widen = eb != dtype_size(s.type->dtype);  // float64 -> float32
  char* dst = static_cast<char*>(out.raw());
  std::vector<int64_t> index(nd ? nd - 1 : 0, 0);
  for (int64_t row = 0, rows = int64_t(numel) / inner; row < rows; ++row) {
    int64_t at = 0;
    for (size_t d = 0; d < index.size(); ++d) at += index[d] * t.stride[d];
    const char* src = base + at * int64_t(eb);
    if (!widen && inner_stride == 1) {
      std::memcpy(dst, src, size_t(inner) * eb);
      dst += size_t(inner) * eb;
    } else {
      for (int64_t i = 0; i < inner; ++i, dst += dtype_size(s.type->dtype)) {
        const char* e = src + i * inner_stride * int64_t(eb);
        if (widen) {
          double v;
          std::memcpy(&v, e, sizeof v);
          float f = float(v);
          std::memcpy(dst, &f, sizeof f);
        } else {
          std::memcpy(dst, e, eb);
        }
      }
    }
    for (size_t d = index.size(); d-- > 0;) {  // next row: an odometer over the outer indices
      if (++index[d] < t.size[d]) break;
      index[d] = 0;
    }
  }
  return out;
}

bool is_tensor(const PickleRef& v) {
  return v->kind == Kind::object && v->object_type == "tensor";
}

// A dict of string -> tensor.
bool is_state_dict(const PickleRef& v) {
  if (v->kind != Kind::dict || v->entries.empty()) return false;
  for (const auto& [key, value] : v->entries)
    if (key->kind != Kind::string || !is_tensor(value)) return false;
  return true;
}

PickleRef Reader::state_dict(const PickleRef& root, const std::string& entry,
                             std::string* picked) const {
  if (root->kind != Kind::dict)
    fail("holds " + root->describe() +
         ", not a dict of name -> tensor (torch.save(model.state_dict(), ...))");
  std::string entries, candidates, not_tensor;
  for (const auto& [key, value] : root->entries) {
    if (key->kind != Kind::string) continue;
    entries += (entries.empty() ? "'" : ", '") + key->text + "'";
    if (is_state_dict(value)) candidates += (candidates.empty() ? "'" : ", '") + key->text + "'";
    if (!is_tensor(value) && not_tensor.empty())
      not_tensor = "'" + key->text + "' holds " + value->describe();
  }
  std::string name = entry;
  if (name.empty()) {
    if (is_state_dict(root) || root->entries.empty()) {
      if (picked) picked->clear();
      return root;
    }
    if (candidates.empty())
      fail(not_tensor +
           ", not a tensor, and no entry is a dict of name -> tensor "
           "(torch.save(model.state_dict(), ...) writes one)");
    if (candidates.find(',') != std::string::npos)
      fail("holds several state dicts (" + candidates + "): name the one to read");
    name = candidates.substr(1, candidates.size() - 2);
  }
  for (const auto& [key, value] : root->entries) {
    if (key->kind != Kind::string || key->text != name) continue;
    if (!is_state_dict(value))
      fail("'" + name + "' holds " + value->describe() + ", not a dict of name -> tensor");
    if (picked) *picked = name;
    return value;
  }
  fail("has no entry '" + name + "' (it has " + entries + ")");
}

NamedTensors Reader::tensors(
    const PickleRef& dict,
    const std::function<std::string_view(const std::string&)>& storage_bytes) {
  NamedTensors out;
  std::map<std::string, size_t> position;
  for (const auto& [key, value] : dict->entries) {  // string -> tensor: state_dict() checked
    const auto& t = *std::static_pointer_cast<TensorRef>(value->object);
    Tensor tensor = materialize(key->text, t, storage_bytes(t.storage->key));
    auto [it, fresh] = position.emplace(key->text, out.size());
    if (fresh)
      out.emplace_back(key->text, tensor);
    else
      out[it->second].second = tensor;  // as in Python, a repeated key keeps the last value
  }
  return out;
}

NamedTensors read_zip(const std::string& path, std::string_view bytes, const std::string& entry,
                      std::string* picked) {
  ZipArchive zip(path, bytes);
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
  Reader reader(path);
  size_t pos = 0;
  PickleRef root = unpickle(zip.read(prefix + "data.pkl"), &pos, reader.hooks(),
                            path + " (" + prefix + "data.pkl)");
  std::map<std::string, std::string_view> storages;  // each read (and CRC-checked) once
  return reader.tensors(reader.state_dict(root, entry, picked), [&](const std::string& key) {
    auto it = storages.find(key);
    if (it == storages.end()) it = storages.emplace(key, zip.read(prefix + "data/" + key)).first;
    return it->second;
  });
}

NamedTensors read_legacy(const std::string& path, std::string_view bytes, const std::string& entry,
                         std::string* picked) {
  Reader reader(path);
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
    const StorageType* type = key->kind == Kind::string ? reader.type_of(key->text) : nullptr;
    if (!type) reader.fail("the storage list names " + key->describe() + " that no tensor uses");
    if (bytes.size() - pos < 8) reader.fail("storage '" + key->text + "' is cut off (truncated?)");
    uint64_t count = 0;
    for (int i = 7; i >= 0; --i) count = (count << 8) | uint8_t(bytes[pos + size_t(i)]);
    pos += 8;
    if (count > (bytes.size() - pos) / type->file_bytes)
      reader.fail("storage '" + key->text + "' is cut off (truncated?)");
    storages[key->text] = bytes.substr(pos, count * type->file_bytes);
    pos += count * type->file_bytes;
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

}  // namespace

NamedTensors load_torch_checkpoint(const std::string& path, const std::string& entry,
                                   std::string* picked) {
  std::string bytes = read_file(path, "for reading");
  return starts_as_zip(bytes) ? read_zip(path, bytes, entry, picked)
                              : read_legacy(path, bytes, entry, picked);
}

CheckpointFormat sniff_checkpoint_format(const std::string& path) {
  char head[9] = {};
  std::ifstream in(path, std::ios::binary);
  in.read(head, sizeof head);
  std::string_view h(head, size_t(in.gcount()));
  if (h.size() == 9 && h.substr(4, 4) == std::string_view("\0\0\0\0", 4) && h[8] == '{')
    return CheckpointFormat::safetensors;
  if (starts_as_zip(h) || (!h.empty() && uint8_t(h[0]) == 0x80)) return CheckpointFormat::torch;
  return CheckpointFormat::unknown;
}

}  // namespace qkv
