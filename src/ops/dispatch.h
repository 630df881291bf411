// Helpers the op front ends (ops/*.cpp) use to check their arguments and pick a device.
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
// Throws for a device this build has no kernel for.
[[noreturn]] void no_kernel(const char* op, Device device);

// The one dispatch idiom of the front ends:
//   if (dev == Device::cuda) QKV_CUDA_KERNEL("op", cuda::kernel(...)); else cpu::kernel(...);
// In a CUDA build it runs the cuda:: kernel (ops/cuda/kernels.h); in a build without CUDA the
// call is left out (nothing to link) and the op throws no_kernel.
#ifdef QKV_WITH_CUDA
#define QKV_CUDA_KERNEL(op, ...) (__VA_ARGS__)
#else
#define QKV_CUDA_KERNEL(op, ...) ::qkv::ops::no_kernel(op, ::qkv::Device::cuda)
#endif
// A host copy of a small index tensor (ids, targets, lengths) for checks that read it: the
// tensor itself on the cpu, a copy (which waits for the device) on cuda.
inline Tensor on_host(const Tensor& t) {
  return t.device() == Device::cpu ? t : t.to(Device::cpu);
}
// Rows of x when its last axis is the feature axis: numel / size(-1).
inline int64_t rows_of(const Tensor& x) {
  return x.size(-1) ? x.numel() / x.size(-1) : 0;
}

}  // namespace qkv::ops
