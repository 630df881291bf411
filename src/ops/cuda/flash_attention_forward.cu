// Launcher of the FlashAttention forward kernel (flash_attention_forward_kernel.cuh), on the qkv
// stream (ops/cuda/context.h).
#include "ops/cuda/context.h"
#include "ops/cuda/flash_attention_forward_kernel.cuh"

namespace qkv::ops::cuda {

namespace {

template <class T, int D>
void launch_forward(const FlashShape& s, const void* q, const void* k, const void* v, void* out,
                    float* lse) {
  constexpr int smem_bytes = flash_fwd::kForwardSmemBytes<D>;
  auto kernel = flash_fwd::flash_forward_kernel<T, D>;
  static const cudaError_t raised =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes);
  check(raised, "flash_forward: cudaFuncSetAttribute");
  const dim3 grid((s.q_len + flash_fwd::kQueryTile - 1) / flash_fwd::kQueryTile, s.batch * s.heads);
  kernel<<<grid, flash_fwd::kThreads, smem_bytes, stream()>>>(
      s, static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
      static_cast<T*>(out), lse);
  check_launch("flash_forward_kernel");
}

}  // namespace

void flash_forward(const FlashShape& s, const void* q, const void* k, const void* v, void* out,
                   float* lse) {
  if (s.bf16)
    s.head_dim == 64 ? launch_forward<__nv_bfloat16, 64>(s, q, k, v, out, lse)
                     : launch_forward<__nv_bfloat16, 128>(s, q, k, v, out, lse);
  else
    s.head_dim == 64 ? launch_forward<__half, 64>(s, q, k, v, out, lse)
                     : launch_forward<__half, 128>(s, q, k, v, out, lse);
}

}  // namespace qkv::ops::cuda
