#include "tensor/dtype.h"

#include <stdexcept>

namespace qkv {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32:
      return 4;
    case DType::f16:
      return 2;
    case DType::bf16:
      return 2;
    case DType::i32:
      return 4;
    case DType::i64:
      return 8;
    case DType::u8:
    case DType::i8:
      return 1;
  }
  return 0;
}

std::string dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "F32";
    case DType::f16:
      return "F16";
    case DType::bf16:
      return "BF16";
    case DType::i32:
      return "I32";
    case DType::i64:
      return "I64";
    case DType::u8:
      return "U8";
    case DType::i8:
      return "I8";
  }
  return "?";
}

DType dtype_from_name(const std::string& name) {
  for (DType t :
       {DType::f32, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u8, DType::i8})
    if (dtype_name(t) == name) return t;
  throw std::runtime_error("unsupported dtype '" + name +
                           "' (qkv reads F32, F16, BF16, I32, I64, U8 and I8)");
}

std::string device_name(Device d) {
  return d == Device::cpu ? "cpu" : "cuda";
}

Device usable_device(const std::string& name) {
  if (name == "cpu") return Device::cpu;
  if (name != "cuda")
    throw std::invalid_argument("unknown device '" + name + "' (expected cpu or cuda)");
#ifndef QKV_WITH_CUDA
  throw std::invalid_argument(
      "device cuda: this qkv was built without CUDA (build it with "
      "`cmake --preset cuda` on a machine with nvcc)");
#endif
  if (cuda_device_count() == 0)
    throw std::invalid_argument("device cuda: no CUDA device is visible on this machine");
  return Device::cuda;
}

#ifndef QKV_WITH_CUDA
int cuda_device_count() {
  return 0;
}
#endif

}  // namespace qkv
