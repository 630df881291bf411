// The CUDA context every qkv kernel, cuBLAS call and Tensor copy shares. Included by .cu files
// only (it names CUDA types); ops/cuda/kernels.h is the plain C++ side.
//
// Streams: all qkv work runs in order on ONE stream, stream(). Kernels and cuBLAS calls are
// queued on it; Tensor copies (tensor/cuda_memory.cu) and memsets are queued on it too, and a
// copy to the host waits for it before returning. The caching allocator (tensor/allocator.h)
// hands a freed block to the next request at once, with no event: that is safe only because
// every use of every block is ordered on this one stream. Today stream() is the legacy default
// stream (nullptr); a later switch to a created stream (or CUDA graphs) changes this file only.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace qkv::ops::cuda {

cudaStream_t stream();
// One cuBLAS handle on stream(), in the default math mode: fp32 products in full fp32 (no TF32),
// so they agree with the CPU's BLAS to about 1e-6.
cublasHandle_t cublas();

// Throw std::runtime_error naming `what` and the CUDA / cuBLAS error.
void check(cudaError_t status, const char* what);
void check(cublasStatus_t status, const char* what);
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

// Column sums over many rows run in two passes (each block of a first pass sums `rows` rows
// of its columns into a partial sum, a second pass adds the partial sums in order): one thread
// per column over all rows would leave most of the GPU idle. The split depends only on the row
// count, so results are reproducible.
struct ColumnChunks {
  int64_t count, rows;  // chunks, and rows per chunk (the last may have fewer)
};
inline ColumnChunks column_chunks(int64_t rows) {
  constexpr int64_t kRowsPerChunk = 64, kMaxChunks = 4096;
  int64_t count = (rows + kRowsPerChunk - 1) / kRowsPerChunk;
  count = count < 1 ? 1 : (count > kMaxChunks ? kMaxChunks : count);
  return {count, (rows + count - 1) / count};
}

// Grid-stride loop over [0, n) in int64.
#define QKV_GRID_LOOP(i, n)                                                 \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += int64_t(blockDim.x) * gridDim.x)

}  // namespace qkv::ops::cuda
