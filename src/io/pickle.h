// A restricted reader of Python pickles (protocols 2 to 5), enough for torch.save's checkpoints.
// It never runs code: a global (`GLOBAL module name`) is only a name, and calling one (`REDUCE`,
// `NEWOBJ`) goes to the caller's `call` hook, which builds what it knows (an OrderedDict, a
// tensor) and throws for anything else. Persistent ids (torch's storages) go to
// `persistent_load`. A malformed pickle gives a std::runtime_error naming the origin and the
// byte offset, never an out-of-bounds read.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qkv {

struct PickleValue;
using PickleRef = std::shared_ptr<PickleValue>;

struct PickleValue {
  // big_integer: a LONG that does not fit int64, its little-endian bytes in `text`.
  // global: "module.name" in `text`. object: what a hook built, in `object`.
  enum class Kind {
    none,
    boolean,
    integer,
    big_integer,
    real,
    string,
    bytes,
    tuple,
    list,
    dict,
    global,
    object
  };
  Kind kind = Kind::none;
  int64_t integer = 0;  // also the boolean
  double real = 0;
  std::string text;
  std::vector<PickleRef> items;                          // tuple, list
  std::vector<std::pair<PickleRef, PickleRef>> entries;  // dict, in insertion order
  std::shared_ptr<void> object;
  std::string object_type;  // names what `object` holds, for messages and checks

  // "a dict", "the global posix.system", ... for error messages.
  std::string describe() const;

  PickleValue() = default;
  PickleValue(const PickleValue&) = delete;
  PickleValue& operator=(const PickleValue&) = delete;
  // Frees nested containers with a work list, not recursion: a pickle may nest a million deep.
  ~PickleValue();
};

PickleRef make_pickle_value(PickleValue::Kind kind);

struct PickleHooks {
  // persistent_load(pid): the value a persistent id stands for.
  std::function<PickleRef(const PickleRef& pid)> persistent_load;
  // call(global, args): the result of calling `global` ("module.name") with the tuple `args`.
  std::function<PickleRef(const std::string& global, const PickleRef& args)> call;
};

// Reads one pickle of `bytes` from *pos to its STOP, returns its value and moves *pos past it.
// `origin` names the file in errors.
PickleRef unpickle(std::string_view bytes, size_t* pos, const PickleHooks& hooks,
                   const std::string& origin);

}  // namespace qkv
