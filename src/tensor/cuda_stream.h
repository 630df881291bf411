// The one CUDA stream every qkv kernel, cuBLAS call and Tensor copy runs on, error checks, and
// the launch shape of the elementwise kernels. Included by .cu files only (it names CUDA types).
//
// Streams: all qkv work runs in order on ONE stream, stream(). Kernels and cuBLAS calls are
// queued on it; Tensor copies (tensor/cuda_memory.cu) and memsets are queued on it too, and a
// copy to the host waits for it before returning. The caching allocator (tensor/allocator.h)
// hands a freed block to the next request at once, with no event: that is safe only because
// every use of every block is ordered on this one stream. Today stream() is the legacy default
// stream (nullptr); a later switch to a created stream (or CUDA graphs) changes
// tensor/cuda_stream.cu only.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace qkv::cuda {

cudaStream_t stream();

// Throws std::runtime_error naming `what` and the CUDA error.
void check(cudaError_t status, const char* what);
// After each launch: a bad configuration (too many threads, too much shared memory) is reported
// here, naming the kernel; errors during the run surface at the next synchronizing call.
void check_launch(const char* kernel);

// Threads per block of the row and elementwise kernels, and a grid that covers n elements
// (capped; the kernels loop with a grid stride).
constexpr int kThreads = 256;
inline unsigned grid_for(int64_t n) {
  int64_t blocks = (n + kThreads - 1) / kThreads;
  return unsigned(blocks < 1 ? 1 : (blocks > 65535 * 8 ? 65535 * 8 : blocks));
}

// Grid-stride loop over [0, n) in int64.
#define QKV_GRID_LOOP(i, n)                                                 \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += int64_t(blockDim.x) * gridDim.x)

}  // namespace qkv::cuda
