#include "io/torch_state_dict.h"

#include <cstring>
#include <stdexcept>

namespace qkv {

struct TorchStorageType {
  const char* global;
  DType dtype;        // of the tensors qkv makes from it
  size_t file_bytes;  // per element in the file
};

namespace {

using Kind = PickleValue::Kind;

constexpr TorchStorageType kStorageTypes[] = {
    {"torch.FloatStorage", DType::f32, 4},     {"torch.HalfStorage", DType::f16, 2},
    {"torch.BFloat16Storage", DType::bf16, 2}, {"torch.DoubleStorage", DType::f32, 8},
    {"torch.LongStorage", DType::i64, 8},      {"torch.IntStorage", DType::i32, 4},
    {"torch.ByteStorage", DType::u8, 1},       {"torch.BoolStorage", DType::u8, 1}};

// A storage as its persistent id names it.
struct TorchStorageRef {
  std::string key;
  const TorchStorageType* type;
  int64_t numel;
};

}  // namespace

// What _rebuild_tensor_v2 describes: elements of a storage at offset + sum(index * stride).
struct TorchTensorRef {
  std::shared_ptr<TorchStorageRef> storage;
  int64_t offset;
  Shape size, stride;
};

PickleHooks TorchStateDictReader::hooks() {
  return {[this](const PickleRef& pid) { return load_storage(pid); },
          [this](const std::string& global, const PickleRef& args) { return call(global, args); }};
}

PickleHooks TorchStateDictReader::plain_hooks() const {
  return {[this](const PickleRef&) -> PickleRef { fail("a storage in a header pickle"); },
          [this](const std::string& global, const PickleRef&) -> PickleRef {
            fail("a header pickle calls " + global);
          }};
}

int64_t TorchStateDictReader::integer(const PickleRef& v, const std::string& what) const {
  if (v->kind != Kind::integer) fail(what + " is " + v->describe() + ", not an int");
  return v->integer;
}

Shape TorchStateDictReader::shape(const PickleRef& v, const std::string& what) const {
  if (v->kind != Kind::tuple) fail(what + " is " + v->describe() + ", not a tuple");
  Shape s;
  for (const auto& item : v->items) {
    s.push_back(integer(item, what));
    if (s.back() < 0) fail(what + " holds " + std::to_string(s.back()));
  }
  return s;
}

size_t TorchStateDictReader::element_bytes(const std::string& key) const {
  auto it = types_.find(key);
  return it == types_.end() ? 0 : it->second->file_bytes;
}

PickleRef TorchStateDictReader::load_storage(const PickleRef& pid) {
  const auto& f = pid->items;
  if (pid->kind != Kind::tuple || f.size() < 5 || f[0]->kind != Kind::string ||
      f[0]->text != "storage" || f[1]->kind != Kind::global || f[2]->kind != Kind::string)
    fail("a persistent id that is not ('storage', type, key, location, size)");
  const TorchStorageType* type = nullptr;
  for (const auto& t : kStorageTypes)
    if (f[1]->text == t.global) type = &t;
  if (!type)
    fail("storage type " + f[1]->text +
         " is not one qkv reads (float32, float16, bfloat16, float64, int64, int32, uint8, bool)");
  auto ref =
      std::make_shared<TorchStorageRef>(TorchStorageRef{f[2]->text, type, integer(f[4], "a size")});
  if (ref->numel < 0) fail("storage '" + ref->key + "' has a negative size");
  if (f.size() > 5 && f[5]->kind != Kind::none)  // the legacy format's view metadata
    fail("storage '" + ref->key + "' is a view of another (PyTorch before 1.0)");
  auto [it, inserted] = types_.emplace(ref->key, type);
  if (!inserted && it->second != type) fail("storage '" + ref->key + "' is read as two types");
  PickleRef out = make_pickle_value(Kind::object);
  out->object = ref, out->object_type = "storage";
  return out;
}

PickleRef TorchStateDictReader::call(const std::string& global, const PickleRef& args) {
  const auto& a = args->items;
  if (global == "collections.OrderedDict" && a.empty()) return make_pickle_value(Kind::dict);
  if (global == "torch._utils._rebuild_tensor_v2" || global == "torch._utils._rebuild_tensor") {
    if (a.size() < 4 || a[0]->kind != Kind::object || a[0]->object_type != "storage")
      fail(global + " without (storage, offset, size, stride)");
    auto t = std::make_shared<TorchTensorRef>();
    t->storage = std::static_pointer_cast<TorchStorageRef>(a[0]->object);
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

Tensor TorchStateDictReader::materialize(const std::string& name, const TorchTensorRef& t,
                                         std::string_view bytes) const {
  const TorchStorageRef& s = *t.storage;
  const size_t eb = s.type->file_bytes;
  using Wide = unsigned __int128;  // sizes and extents cannot overflow in it
  if (Wide(s.numel) * eb > bytes.size())
    fail("storage '" + s.key + "' holds " + std::to_string(bytes.size()) +
         " bytes, fewer than its " + std::to_string(s.numel) + " elements need (truncated file?)");
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
  const char* base = bytes.data() + t.offset * int64_t(eb);
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

namespace {

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

}  // namespace

PickleRef TorchStateDictReader::state_dict(const PickleRef& root, const std::string& entry,
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

NamedTensors TorchStateDictReader::tensors(
    const PickleRef& dict,
    const std::function<std::string_view(const std::string&)>& storage_bytes) {
  NamedTensors out;
  std::map<std::string, size_t> position;
  for (const auto& [key, value] : dict->entries) {  // string -> tensor: state_dict() checked
    const auto& t = *std::static_pointer_cast<TorchTensorRef>(value->object);
    Tensor tensor = materialize(key->text, t, storage_bytes(t.storage->key));
    auto [it, fresh] = position.emplace(key->text, out.size());
    if (fresh)
      out.emplace_back(key->text, tensor);
    else
      out[it->second].second = tensor;  // as in Python, a repeated key keeps the last value
  }
  return out;
}

}  // namespace qkv
