#include <stdexcept>
#include <string>

#include "ops/cuda/context.h"

namespace qkv::ops::cuda {

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

void check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string(what) + " failed: " + cublasGetStatusName(status) + " (" +
                             cublasGetStatusString(status) + ")");
}

}  // namespace qkv::ops::cuda
