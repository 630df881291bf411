// Helpers the op front ends (ops/*.cpp) use to check their arguments and pick a device.
#pragma once
#include <string>

#include "tensor/tensor.h"

namespace qkv::ops {

// Throws std::invalid_argument "op: what (shapes...)" unless ok.
void require(bool ok, const char* op, const std::string& what);
// All defined tensors must live on one device; returns it.
Device common_device(const char* op, std::initializer_list<const Tensor*> tensors);
// Throws for a device this build has no kernel for.
[[noreturn]] void no_kernel(const char* op, Device device);
// Rows of x when its last axis is the feature axis: numel / size(-1).
inline int64_t rows_of(const Tensor& x) {
  return x.size(-1) ? x.numel() / x.size(-1) : 0;
}

}  // namespace qkv::ops
