#include <stdexcept>
#include <string>

#include "tensor/cuda_stream.h"

namespace qkv::cuda {

cudaStream_t stream() {
  return nullptr;  // the legacy default stream: see cuda_stream.h
}

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string(what) + " failed: " + cudaGetErrorName(status) + " (" +
                             cudaGetErrorString(status) + ")");
}

void check_launch(const char* kernel) {
  check(cudaGetLastError(), kernel);
}

}  // namespace qkv::cuda
