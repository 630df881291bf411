// Device code shared by the FlashAttention kernels (flash_attention_{forward,backward}_kernel.cuh):
// the key mask and tile loads into shared memory, over the PTX instructions of
// flash_attention_ptx.cuh (whose comment gives the fragment layouts the kernels rely on).
// With QKV_FLASH_EMULATION the includer has brought CPU versions of those instructions
// (tests/cuda_emulation/ptx.h), so the kernels run in a CPU test.
#pragma once
#include <cstdint>

#include "ops/kernels.h"
#ifndef QKV_FLASH_EMULATION
#include "ops/cuda/flash_attention_ptx.cuh"
#endif

namespace qkv::ops::cuda {

// qkv's 16-bit element types (tensor/dtype.h) as CUDA's: the same bits.
template <class T>
struct Native;
template <>
struct Native<bf16> {
  using type = __nv_bfloat16;
};
template <>
struct Native<f16> {
  using type = __half;
};

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Which keys a query row sees: [0, key_end(row)). Rows past the queries see none, so their
// (zero-filled) tile rows drop out of every sum.
struct KeyMask {
  int q_len, k_len, key_len;  // key_len: keys of this batch entry that are not padding
  bool causal;

  __device__ KeyMask(const FlashShape& s, int batch)
      : q_len(s.q_len), k_len(s.k_len), key_len(s.k_len), causal(s.causal) {
    if (s.key_lengths) key_len = min(max(s.key_lengths[batch], 0), s.k_len);
  }
  __device__ int key_end(int row) const {
    if (row >= q_len) return 0;
    int end = causal ? min(key_len, row + (k_len - q_len) + 1) : key_len;
    return max(end, 0);
  }
  // key_end is non-decreasing over the rows < q_len, so these bound it on rows [r0, r0 + n).
  __device__ int min_end(int r0, int n) const { return r0 + n <= q_len ? key_end(r0) : 0; }
  __device__ int max_end(int r0, int n) const {
    return r0 < q_len ? key_end(min(r0 + n, q_len) - 1) : 0;
  }
};

// Shared-memory tiles hold rows of D elements padded by 8 (16 bytes): the 8 row addresses of
// one ldmatrix then fall on 8 different 16-byte bank groups (row strides of 144 or 272 bytes).
template <int D>
constexpr int kRowStride = D + 8;

// Copies rows [r0, r0 + kRows) of a row-major [n_rows, D] matrix into tile [kRows][D + 8];
// rows >= n_rows become zeros. Every thread of the block takes part.
template <int kRows, int D, int kThreads, class T>
__device__ __forceinline__ void load_tile_async(T* tile, const T* matrix, int r0, int n_rows) {
  constexpr int kChunksPerRow = D / 8;  // 16-byte chunks
  for (int i = threadIdx.x; i < kRows * kChunksPerRow; i += kThreads) {
    int row = i / kChunksPerRow, col = (i % kChunksPerRow) * 8;
    bool valid = r0 + row < n_rows;
    const T* src = matrix + (valid ? int64_t(r0 + row) * D + col : 0);
    cp_async_16(tile + row * kRowStride<D> + col, src, valid);
  }
}

}  // namespace qkv::ops::cuda
