// Launcher of the FlashAttention forward kernel (flash_attention_forward_kernel.cuh), on the qkv
// stream (ops/cuda/context.h).
#include "ops/cuda/context.h"
#include "ops/cuda/flash_attention_forward_kernel.cuh"
#include "ops/kernel_registry.h"

namespace qkv::ops::cuda {

namespace {

template <class T, int D>
void launch_forward(const FlashShape& s, const void* q, const void* k, const void* v, void* out,
                    float* lse) {
  constexpr int smem_bytes = flash_fwd::kForwardSmemBytes<D>;
  auto kernel = flash_fwd::flash_forward_kernel<T, D>;
  static const cudaError_t raised = allow_shared_memory(kernel, smem_bytes);
  check(raised, "flash_forward: cudaFuncSetAttribute");
  const dim3 grid((s.q_len + flash_fwd::kQueryTile - 1) / flash_fwd::kQueryTile, s.batch * s.heads);
  kernel<<<grid, flash_fwd::kThreads, smem_bytes, stream()>>>(
      s, static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
      static_cast<T*>(out), lse);
  check_launch("flash_forward_kernel");
}

}  // namespace

// T: bf16 or f16.
template <class T>
void flash_forward(const FlashShape& s, const T* q, const T* k, const T* v, T* out, float* lse) {
  using N = typename Native<T>::type;
  s.head_dim == 64 ? launch_forward<N, 64>(s, q, k, v, out, lse)
                   : launch_forward<N, 128>(s, q, k, v, out, lse);
}
QKV_REGISTER_KERNEL(flash_attention_forward, Device::cuda, bf16, flash_forward<bf16>);
QKV_REGISTER_KERNEL(flash_attention_forward, Device::cuda, f16, flash_forward<f16>);

}  // namespace qkv::ops::cuda
