// Device memory and copies for the CUDA build: plain cudaMalloc (never managed memory), used by
// the caching allocator and Tensor. Compiled only with -DQKV_CUDA=ON.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "tensor/dtype.h"

namespace qkv {

namespace {
void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string(what) + " failed: " + cudaGetErrorString(status));
}
}  // namespace

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: not an error for the caller
    return 0;
  }
  return count;
}

void* cuda_malloc(size_t bytes) {
  void* ptr = nullptr;
  check(cudaMalloc(&ptr, bytes), "cudaMalloc");
  return ptr;
}

void cuda_free(void* ptr) {
  cudaFree(ptr);
}

void cuda_copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  cudaMemcpyKind kind =
      dst_device == Device::cuda
          ? (src_device == Device::cuda ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
          : cudaMemcpyDeviceToHost;
  check(cudaMemcpy(dst, src, bytes, kind), "cudaMemcpy");
}

void cuda_memset_zero(void* dst, size_t bytes) {
  check(cudaMemset(dst, 0, bytes), "cudaMemset");
}

}  // namespace qkv
