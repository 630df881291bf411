// Small ops of incremental decoding on cuda: strided row copies (KV-cache writes and gathers),
// beam reordering and argmax.
#include "ops/cuda/block_reduce.cuh"
#include "ops/cuda/context.h"
#include "ops/cuda/kernels.h"

namespace qkv::ops::cuda {

namespace {
// y [m, row_bytes] = x [.., row_bytes][index]; rows copied as bytes (any dtype).
__global__ void gather_rows_kernel(const uint8_t* x, const int32_t* index, int64_t m,
                                   int64_t row_bytes, uint8_t* y) {
  QKV_GRID_LOOP(i, m * row_bytes) {
    int64_t r = i / row_bytes, c = i % row_bytes;
    y[i] = x[int64_t(index[r]) * row_bytes + c];
  }
}

// One block per row of x [n, v]: the largest element, the first of equals.
__global__ void argmax_rows_kernel(const float* x, int64_t v, int32_t* y) {
  const float* row = x + int64_t(blockIdx.x) * v;
  float best = -INFINITY;
  int64_t best_at = v;  // none yet
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x)
    if (best_at == v || row[j] > best) best = row[j], best_at = j;  // j grows: first kept
  // The largest value, then the smallest index holding it.
  float top = block_max(best_at < v ? best : -INFINITY);
  int64_t candidate = best_at < v && best == top ? best_at : v;
  __shared__ int64_t first[32];
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int offset = 16; offset > 0; offset /= 2) {
    int64_t other = __shfl_xor_sync(0xffffffffu, candidate, offset);
    candidate = other < candidate ? other : candidate;
  }
  if (lane == 0) first[warp] = candidate;
  __syncthreads();
  if (threadIdx.x == 0) {
    int64_t at = v;
    for (int w = 0; w < int(blockDim.x / 32); ++w) at = first[w] < at ? first[w] : at;
    y[blockIdx.x] = int32_t(at < v ? at : 0);  // a row of NaN (or empty): 0, as the CPU
  }
}
}  // namespace

void copy_rows(void* dst, int64_t dst_pitch, const void* src, int64_t src_pitch, int64_t width,
               int64_t height) {
  if (width == 0 || height == 0) return;
  check(cudaMemcpy2DAsync(dst, size_t(dst_pitch), src, size_t(src_pitch), size_t(width),
                          size_t(height), cudaMemcpyDeviceToDevice, stream()),
        "copy_rows (cudaMemcpy2DAsync)");
}

void gather_rows(const void* x, const int32_t* index, int64_t m, int64_t row_bytes, void* y) {
  if (m * row_bytes == 0) return;
  gather_rows_kernel<<<grid_for(m * row_bytes), kThreads, 0, stream()>>>(
      static_cast<const uint8_t*>(x), index, m, row_bytes, static_cast<uint8_t*>(y));
  check_launch("gather_rows");
}

void argmax_rows(const float* x, int64_t n, int64_t v, int32_t* y) {
  if (n == 0) return;
  argmax_rows_kernel<<<unsigned(n), kThreads, 0, stream()>>>(x, v, y);
  check_launch("argmax_rows");
}

}  // namespace qkv::ops::cuda
