// Device memory and copies for the CUDA build: plain cudaMalloc (never managed memory), used by
// the caching allocator and Tensor. Compiled only with -DQKV_CUDA=ON. Copies and memsets are
// queued on the qkv stream, in order with the kernels (tensor/cuda_stream.h).
#include <cuda_runtime.h>

#include "tensor/cuda_stream.h"
#include "tensor/dtype.h"

namespace qkv {

using cuda::check;
using cuda::stream;

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
  check(cudaMemcpyAsync(dst, src, bytes, kind, stream()), "cudaMemcpyAsync");
  // The host side of a copy is pageable memory the caller may read or free at once.
  if (kind != cudaMemcpyDeviceToDevice) check(cudaStreamSynchronize(stream()), "copy (wait)");
}

void cuda_memset_zero(void* dst, size_t bytes) {
  check(cudaMemsetAsync(dst, 0, bytes, stream()), "cudaMemsetAsync");
}

}  // namespace qkv
