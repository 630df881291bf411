// Launchers of the FlashAttention backward kernels (flash_attention_backward_kernel.cuh).
#include <algorithm>

#include "ops/cuda/flash_attention_backward_kernel.cuh"
#include "ops/cuda/flash_attention_ptx.cuh"

namespace qkv::ops::cuda {

namespace {

using namespace flash_bwd;

template <class T, int D>
void launch_backward(const FlashShape& s, const void* dout, const void* q, const void* k,
                     const void* v, const void* out, const float* lse, float* delta, float* dq,
                     FlashGrad dk, FlashGrad dv) {
  const int64_t rows = int64_t(s.batch) * s.heads * s.q_len;
  constexpr int kDeltaThreads = 256;  // 8 rows per block
  flash_delta_kernel<T, D><<<(rows * 32 + kDeltaThreads - 1) / kDeltaThreads, kDeltaThreads>>>(
      static_cast<const T*>(dout), static_cast<const T*>(out), delta, rows);
  check_cuda(cudaGetLastError(), "flash_backward delta kernel launch");

  constexpr int smem_bytes = kBackwardSmemBytes<D>;
  auto kernel = flash_backward_kernel<T, D>;
  static const cudaError_t raised =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes);
  check_cuda(raised, "flash_backward: cudaFuncSetAttribute");
  dim3 grid((s.k_len + kKeyTile - 1) / kKeyTile, s.batch * s.heads);
  kernel<<<grid, kThreads, smem_bytes>>>(s, static_cast<const T*>(dout), static_cast<const T*>(q),
                                         static_cast<const T*>(k), static_cast<const T*>(v), lse,
                                         delta, dq, dk, dv);
  check_cuda(cudaGetLastError(), "flash_backward kernel launch");
}

template <class T>
__global__ void add_f32_into_half_kernel(const float* src, T* dst, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = T(float(dst[i]) + src[i]);
}

}  // namespace

void flash_backward(const FlashShape& s, const void* dout, const void* q, const void* k,
                    const void* v, const void* out, const float* lse, float* delta, float* dq,
                    FlashGrad dk, FlashGrad dv) {
  if (s.bf16)
    s.head_dim == 64
        ? launch_backward<__nv_bfloat16, 64>(s, dout, q, k, v, out, lse, delta, dq, dk, dv)
        : launch_backward<__nv_bfloat16, 128>(s, dout, q, k, v, out, lse, delta, dq, dk, dv);
  else
    s.head_dim == 64 ? launch_backward<__half, 64>(s, dout, q, k, v, out, lse, delta, dq, dk, dv)
                     : launch_backward<__half, 128>(s, dout, q, k, v, out, lse, delta, dq, dk, dv);
}

void add_f32_into_half(const float* src, void* dst, int64_t n, bool bf16) {
  if (n == 0) return;
  const int threads = 256;
  const int blocks = int(std::min<int64_t>((n + threads - 1) / threads, 4096));
  if (bf16)
    add_f32_into_half_kernel<<<blocks, threads>>>(src, static_cast<__nv_bfloat16*>(dst), n);
  else
    add_f32_into_half_kernel<<<blocks, threads>>>(src, static_cast<__half*>(dst), n);
  check_cuda(cudaGetLastError(), "add_f32_into_half kernel launch");
}

}  // namespace qkv::ops::cuda
