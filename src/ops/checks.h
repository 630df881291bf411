// Helpers the op front ends (ops/*.cpp) use to check their arguments before they dispatch to a
// kernel (ops/kernel_registry.h).
#pragma once
#include <string>

#include "tensor/tensor.h"

namespace qkv::ops {

// Throws std::invalid_argument "op: what" unless ok. A macro so that `what` (often built from
// shapes) is only evaluated when the check fails: ops run in the decoding loop's hot path.
#define QKV_REQUIRE(ok, op, what)                   \
  do {                                              \
    if (!(ok)) ::qkv::ops::fail_argument(op, what); \
  } while (0)
[[noreturn]] void fail_argument(const char* op, const std::string& what);
// All defined tensors must live on one device; returns it.
Device common_device(const char* op, std::initializer_list<const Tensor*> tensors);
// All defined tensors must have one dtype; returns it (F32 when none is defined).
DType common_dtype(const char* op, std::initializer_list<const Tensor*> tensors);
// A norm's x [..., d] and its gamma [d] of x's dtype (layer_norm, rms_norm).
void check_norm_params(const char* op, const Tensor& x, const Tensor& gamma);
// A host copy of a small index tensor (ids, targets, lengths) for checks that read it: the
// tensor itself on the cpu, a copy (which waits for the device) on cuda.
inline Tensor on_host(const Tensor& t) {
  return t.device() == Device::cpu ? t : t.to(Device::cpu);
}
// Rows of x when its last axis is the feature axis: numel / size(-1).
inline int64_t rows_of(const Tensor& x) {
  return x.size(-1) ? x.numel() / x.size(-1) : 0;
}
// t's data as T, or null when t is undefined (an output that is not needed).
template <typename T>
T* data_or_null(Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

}  // namespace qkv::ops
