// The PTX instructions of the FlashAttention kernels (tensor-core MMA, ldmatrix, cp.async,
// ex2) as device functions. tests/cuda_emulation/ptx.h gives the same functions on the
// CPU, where the kernels run in a test.
//
// Fragment layouts of mma.sync.aligned.m16n8k16.row.col (PTX ISA, "Matrix fragments for
// mma.m16n8k16"), with lane = threadIdx.x % 32, g = lane / 4 (group), t = lane % 4:
//   A (16 x 16, row-major, 4 x b32, two 16-bit elements each, the lower column in the low half):
//     a0: row g,     cols 2t, 2t+1      a1: row g + 8, cols 2t, 2t+1
//     a2: row g,     cols 2t+8, 2t+9    a3: row g + 8, cols 2t+8, 2t+9
//   B (16 x 8, "col": k down, n across, 2 x b32):
//     b0: rows (k) 2t, 2t+1, col (n) g  b1: rows 2t+8, 2t+9, col g
//   C/D (16 x 8, f32): c0, c1: row g, cols 2t, 2t+1    c2, c3: row g + 8, cols 2t, 2t+1
// ldmatrix.m8n8.x4 loads four 8x8 matrices of 16-bit elements; lanes 8i..8i+7 give the row
// addresses of matrix i, and register i of each lane receives from matrix i the pair
// (row g, cols 2t, 2t+1); with .trans it receives (rows 2t, 2t+1, col g) instead.
// Hence (used in both kernels):
//   - A operand from a row-major [rows][cols] tile: lane's row = lane % 16, col = (lane / 16) * 8.
//   - B operand for X @ Y^T from Y stored row-major [n][k] (no .trans): matrices (n, k), (n, k+8),
//     (n+8, k), (n+8, k+8) give b0, b1 of n-block n and b0, b1 of n-block n+8:
//     lane's row = n + (lane / 16) * 8 + lane % 8, col = k + ((lane / 8) % 2) * 8.
//   - B operand for X @ Y from Y stored row-major [k][n] (.trans): matrices (k, n), (k+8, n),
//     (k, n+8), (k+8, n+8): lane's row = k + ((lane / 8) % 2) * 8 + lane % 8,
//     col = n + (lane / 16) * 8.
//   - A C fragment pair (n-blocks 2j, 2j+1 of a 16-row product) is the A operand of k-step j of
//     the next product: a0 = C[2j].c0c1, a1 = C[2j].c2c3, a2 = C[2j+1].c0c1, a3 = C[2j+1].c2c3.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace qkv::ops::cuda {

// Two floats rounded to one register of two 16-bit elements (lo in the low half).
template <class T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  uint32_t bits;
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    bits = *reinterpret_cast<uint32_t*>(&h);
  } else {
    __half2 h = __floats2half2_rn(lo, hi);
    bits = *reinterpret_cast<uint32_t*>(&h);
  }
  return bits;
}

template <class T>
__device__ __forceinline__ float2 unpack2(uint32_t bits) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __bfloat1622float2(*reinterpret_cast<__nv_bfloat162*>(&bits));
  else
    return __half22float2(*reinterpret_cast<__half2*>(&bits));
}

// c += a @ b on the tensor cores: a 16x16, b 16x8 (T), c 16x8 (f32).
template <class T>
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return uint32_t(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(smem))
               : "memory");
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(smem))
               : "memory");
}

// Asynchronous global -> shared copies; bytes the source does not give (valid == false) are
// zero-filled, so tiles past the end of a sequence hold zeros, never stale data or NaN.
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(smem)), "l"(gmem),
               "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_4(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr(smem)), "l"(gmem),
               "r"(valid ? 4 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
// Waits until at most `pending` of this thread's committed groups are still in flight.
template <int pending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(pending) : "memory");
}

// 2^x; 2^-inf = 0.
__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

}  // namespace qkv::ops::cuda
