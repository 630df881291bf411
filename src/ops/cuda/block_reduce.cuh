// Sums and maxima across the threads of a block, for the row kernels (one block per row).
// Every thread of the block must call them (they synchronize), and every thread gets the
// result. The order of the additions depends only on the block size: results are reproducible.
#pragma once
#include <cuda_runtime.h>

#include <cmath>

#include "ops/cuda/context.h"

namespace qkv::ops::cuda {

template <class T>
__device__ T warp_sum(T v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ inline float warp_max(float v) {
  for (int offset = 16; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Combines one value per thread with `warp_op` (identity: its neutral value); blockDim.x is a
// multiple of 32, at most 1024.
template <class T, class WarpOp>
__device__ T block_reduce(T v, T identity, WarpOp warp_op) {
  __shared__ T partial[32];
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_op(v);
  __syncthreads();  // partial may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < warps ? partial[lane] : identity;
  return warp_op(v);
}

template <class T>
__device__ T block_sum(T v) {
  return block_reduce(v, T(0), [](T x) { return warp_sum(x); });
}

__device__ inline float block_max(float v) {
  return block_reduce(v, -INFINITY, [](float x) { return warp_max(x); });
}

}  // namespace qkv::ops::cuda
