#include "ops/dispatch.h"

#include <stdexcept>

namespace qkv::ops {

void fail_argument(const char* op, const std::string& what) {
  throw std::invalid_argument(std::string(op) + ": " + what);
}

Device common_device(const char* op, std::initializer_list<const Tensor*> tensors) {
  Device d = Device::cpu;
  bool first = true;
  for (const Tensor* t : tensors) {
    if (!t || !t->defined()) continue;
    if (first)
      d = t->device(), first = false;
    else
      QKV_REQUIRE(t->device() == d, op, "tensors live on different devices");
  }
  return d;
}

void no_kernel(const char* op, Device device) {
  throw std::runtime_error(std::string(op) + ": no kernel for device " + device_name(device) +
                           " in this build");
}

}  // namespace qkv::ops
