// Autocast for matrix products (as PyTorch's torch.autocast): a thread-local precision that
// every matrix product reads, so one model code path trains in f32 or in mixed precision.
//   { ops::AutocastScope scope(ops::MatmulPrecision::bf16); ... forward + backward ... }
// Inside a bf16 scope, on cuda, gemm / batched_gemm / matmul / linear_forward / linear_backward
// and the products inside attention round their f32 operands to bf16 (a cast kernel per call,
// into scratch from the caching allocator) and run cuBLAS with bf16 inputs, f32 accumulation
// and f32 outputs (beta = 1 accumulates into f32 gradients). Attention with head dim 64 or 128
// runs the FlashAttention kernels on bf16 copies of q, k, v instead (ops::AttentionSaved). Tensors
// stay f32 everywhere: activations, master weights, gradients and Adam state; every other op runs
// in f32. On the cpu, gemm / batched_gemm / matmul / linear_forward / linear_backward inside a
// bf16 scope run cpu::gemm_bf16 (ops/cpu/low_precision.h): the operands rounded to bf16 as they
// are packed, AVX512_BF16's dot products, f32 sums; attention and every other op stay f32.
#pragma once
#include <string>

namespace qkv::ops {

enum class MatmulPrecision { f32, bf16 };
// "f32" or "bf16"; anything else throws std::invalid_argument naming the value.
MatmulPrecision precision_from_name(const std::string& name);
const char* precision_name(MatmulPrecision p);

// This thread's precision for matrix products (f32 outside every scope).
MatmulPrecision matmul_precision();

// Whether this CPU multiplies bf16 in hardware (AVX512_BF16, and QKV_CPU_ISA does not rule it
// out); without it the cpu's bf16 products are right but slower than f32.
bool cpu_has_bf16_products();

// Sets this thread's matmul precision for its lifetime, then restores the previous one
// (scopes nest).
class AutocastScope {
 public:
  explicit AutocastScope(MatmulPrecision p);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  MatmulPrecision previous_;
};

}  // namespace qkv::ops
