// What the CUDA kernels of ops/cuda share beyond the stream (tensor/cuda_stream.h): the cuBLAS
// handle, and the split of column sums. Included by .cu files only (it names CUDA types).
#pragma once
#include <cublas_v2.h>

#include "ops/kernels.h"
#include "tensor/cuda_stream.h"

namespace qkv::ops::cuda {

using qkv::cuda::check;
using qkv::cuda::check_launch;
using qkv::cuda::grid_for;
using qkv::cuda::kThreads;
using qkv::cuda::stream;

// One cuBLAS handle on stream(), in the default math mode: fp32 products in full fp32 (no TF32),
// so they agree with the CPU's BLAS to about 1e-6.
cublasHandle_t cublas();
// Throws std::runtime_error naming `what` and the cuBLAS error.
void check(cublasStatus_t status, const char* what);

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

// Once per kernel, before its first launch: lets it take `bytes` of dynamic shared memory (above
// the default 48 KiB) and asks for L1's largest shared-memory carveout, which the tiled kernels
// need to fit the blocks per multiprocessor their __launch_bounds__ plan for. The first error,
// or cudaSuccess.
template <class Kernel>
cudaError_t allow_shared_memory(Kernel* kernel, int bytes) {
  cudaError_t raised =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (raised != cudaSuccess) return raised;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                              cudaSharedmemCarveoutMaxShared);
}

// The strided-batched f32 GEMM kernel (ops/cuda/gemm.cu), for the other kernels' products.
kernels::batched_gemm::fn<float> batched_gemm;

}  // namespace qkv::ops::cuda
