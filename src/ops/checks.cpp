#include "ops/checks.h"

#include <stdexcept>

#include "ops/kernel_registry.h"

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

DType common_dtype(const char* op, std::initializer_list<const Tensor*> tensors) {
  DType d = DType::f32;
  bool first = true;
  for (const Tensor* t : tensors) {
    if (!t || !t->defined()) continue;
    if (first)
      d = t->dtype(), first = false;
    else
      QKV_REQUIRE(
          t->dtype() == d, op,
          "tensors of different dtypes: " + dtype_name(d) + " and " + dtype_name(t->dtype()));
  }
  return d;
}

void no_kernel(const char* op, Device device, DType dtype) {
  throw std::runtime_error(std::string(op) + ": no kernel for " + device_name(device) + " " +
                           dtype_name(dtype) + " in this build");
}

void check_norm_params(const char* op, const Tensor& x, const Tensor& gamma) {
  QKV_REQUIRE(x.rank() >= 1, op, "x must be [..., d], got " + shape_str(x.shape()));
  QKV_REQUIRE(gamma.shape() == Shape{x.size(-1)} && gamma.dtype() == x.dtype(), op,
              "gamma is " + dtype_name(gamma.dtype()) + " " + shape_str(gamma.shape()) +
                  ", expected " + dtype_name(x.dtype()) + " [" + std::to_string(x.size(-1)) +
                  "] for x " + shape_str(x.shape()));
}

}  // namespace qkv::ops
