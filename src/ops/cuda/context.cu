#include <stdexcept>
#include <string>

#include "ops/cuda/context.h"

namespace qkv::ops::cuda {

cudaStream_t stream() {
  return nullptr;  // the legacy default stream: see context.h
}

cublasHandle_t cublas() {
  // One handle per thread (cuBLAS handles must not be shared by threads running at once);
  // created on first use, on the current device.
  thread_local struct Handle {
    cublasHandle_t h = nullptr;
    Handle() {
      check(cublasCreate(&h), "cublasCreate");
      check(cublasSetStream(h, stream()), "cublasSetStream");
      check(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    }
    ~Handle() { cublasDestroy(h); }
  } handle;
  return handle.h;
}

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string(what) + " failed: " + cudaGetErrorName(status) + " (" +
                             cudaGetErrorString(status) + ")");
}

void check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string(what) + " failed: " + cublasGetStatusName(status) + " (" +
                             cublasGetStatusString(status) + ")");
}

void check_launch(const char* kernel) {
  check(cudaGetLastError(), kernel);
}

}  // namespace qkv::ops::cuda
