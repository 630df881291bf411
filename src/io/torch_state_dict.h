// What the data pickle of a torch.save checkpoint means (io/torch_checkpoint.h finds its bytes):
// hooks for io/pickle.h that turn its persistent ids into storages and its few allowed calls
// into dicts and tensors, the choice of the state dict in it, and the tensors, copied out of
// their storages' bytes with every offset, size and stride checked.
#pragma once
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>

#include "io/pickle.h"
#include "io/safetensors.h"

namespace qkv {

struct TorchStorageType;  // torch.FloatStorage, ... (torch_state_dict.cpp)
struct TorchTensorRef;    // a tensor's place in its storage

class TorchStateDictReader {
 public:
  // `path` names the file in errors.
  explicit TorchStateDictReader(std::string path) : path_(std::move(path)) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error(path_ + ": " + what);
  }

  // For the data pickle: storages, OrderedDicts, tensors and parameters; any other call fails.
  PickleHooks hooks();
  // For the legacy format's header pickles, which hold no storages or calls.
  PickleHooks plain_hooks() const;

  // The bytes per element of storage `key` as the data pickle declared it; 0 when it did not.
  size_t element_bytes(const std::string& key) const;

  // The state dict in `root` (see load_torch_checkpoint).
  PickleRef state_dict(const PickleRef& root, const std::string& entry, std::string* picked) const;
  // The tensors of the state dict `dict`; `storage_bytes(key)` gives a storage's bytes.
  NamedTensors tensors(const PickleRef& dict,
                       const std::function<std::string_view(const std::string&)>& storage_bytes);

 private:
  int64_t integer(const PickleRef& v, const std::string& what) const;
  Shape shape(const PickleRef& v, const std::string& what) const;  // a tuple of sizes >= 0
  PickleRef load_storage(const PickleRef& pid);
  PickleRef call(const std::string& global, const PickleRef& args);
  Tensor materialize(const std::string& name, const TorchTensorRef& t,
                     std::string_view bytes) const;

  std::string path_;
  std::map<std::string, const TorchStorageType*> types_;  // storage key -> its type
};

}  // namespace qkv
