// Launchers of the FlashAttention forward kernels (flash_attention_forward_kernel.cuh).
#include "ops/cuda/flash_attention_forward_kernel.cuh"
#include "ops/cuda/flash_attention_ptx.cuh"

namespace qkv::ops::cuda {

namespace {

using namespace flash_fwd;

template <class T, int D>
void launch_forward(const FlashShape& s, const void* q, const void* k, const void* v, void* out,
                    float* lse) {
  constexpr int smem_bytes = kForwardSmemBytes<D>;
  auto kernel = flash_forward_kernel<T, D>;
  static const cudaError_t raised =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes);
  check_cuda(raised, "flash_forward: cudaFuncSetAttribute");
  dim3 grid((s.q_len + kQueryTile - 1) / kQueryTile, s.batch * s.heads);
  kernel<<<grid, kThreads, smem_bytes>>>(s, static_cast<const T*>(q), static_cast<const T*>(k),
                                         static_cast<const T*>(v), static_cast<T*>(out), lse);
  check_cuda(cudaGetLastError(), "flash_forward kernel launch");
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
