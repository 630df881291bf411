// Launchers of the FlashAttention backward kernels (flash_attention_backward_kernel.cuh), and
// the f32 -> bf16/f16 gradient add, on the qkv stream (ops/cuda/context.h).
#include "ops/cuda/context.h"
#include "ops/cuda/flash_attention_backward_kernel.cuh"
#include "ops/kernel_registry.h"

namespace qkv::ops::cuda {

namespace {

template <class T, int D>
void launch_backward(const FlashShape& s, const void* dout, const void* q, const void* k,
                     const void* v, const void* out, const float* lse, float* delta, float* dq,
                     FlashGrad dk, FlashGrad dv) {
  const int64_t rows = int64_t(s.batch) * s.heads * s.q_len;
  constexpr int kDeltaThreads = 256;  // 8 rows per block
  flash_bwd::flash_delta_kernel<T, D>
      <<<(rows * 32 + kDeltaThreads - 1) / kDeltaThreads, kDeltaThreads, 0, stream()>>>(
          static_cast<const T*>(dout), static_cast<const T*>(out), delta, rows);
  check_launch("flash_delta_kernel");

  constexpr int smem_bytes = flash_bwd::kBackwardSmemBytes<D>;
  auto kernel = flash_bwd::flash_backward_kernel<T, D>;
  static const cudaError_t raised = allow_shared_memory(kernel, smem_bytes);
  check(raised, "flash_backward: cudaFuncSetAttribute");
  const dim3 grid((s.k_len + flash_bwd::kKeyTile - 1) / flash_bwd::kKeyTile, s.batch * s.heads);
  kernel<<<grid, flash_bwd::kThreads, smem_bytes, stream()>>>(
      s, static_cast<const T*>(dout), static_cast<const T*>(q), static_cast<const T*>(k),
      static_cast<const T*>(v), lse, delta, dq, dk, dv);
  check_launch("flash_backward_kernel");
}

template <class T>
__global__ void add_f32_into_kernel(const float* src, T* dst, int64_t n) {
  QKV_GRID_LOOP(i, n) dst[i] = T(float(dst[i]) + src[i]);
}

}  // namespace

// T: bf16 or f16.
template <class T>
void flash_backward(const FlashShape& s, const T* dout, const T* q, const T* k, const T* v,
                    const T* out, const float* lse, float* delta, float* dq, FlashGrad dk,
                    FlashGrad dv) {
  using N = typename Native<T>::type;
  s.head_dim == 64 ? launch_backward<N, 64>(s, dout, q, k, v, out, lse, delta, dq, dk, dv)
                   : launch_backward<N, 128>(s, dout, q, k, v, out, lse, delta, dq, dk, dv);
}

template <class T>
void add_f32_into(const float* src, T* dst, int64_t n) {
  using N = typename Native<T>::type;
  if (n == 0) return;
  add_f32_into_kernel<N><<<grid_for(n), kThreads, 0, stream()>>>(src, reinterpret_cast<N*>(dst), n);
  check_launch("add_f32_into_kernel");
}

QKV_REGISTER_KERNEL(flash_attention_backward, Device::cuda, bf16, flash_backward<bf16>);
QKV_REGISTER_KERNEL(flash_attention_backward, Device::cuda, f16, flash_backward<f16>);
QKV_REGISTER_KERNEL(add_f32_into, Device::cuda, bf16, add_f32_into<bf16>);
QKV_REGISTER_KERNEL(add_f32_into, Device::cuda, f16, add_f32_into<f16>);

}  // namespace qkv::ops::cuda
