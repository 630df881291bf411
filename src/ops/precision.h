// Autocast for matrix products (as PyTorch's torch.autocast): a thread-local precision that
// every cuda matrix product reads, so one model code path trains in f32 or in mixed precision.
//   { ops::AutocastScope scope(ops::MatmulPrecision::bf16); ... forward + backward ... }
// Inside a bf16 scope, on cuda, gemm / batched_gemm / matmul / linear_forward / linear_backward
// and the products inside attention round their f32 operands to bf16 (a cast kernel per call,
// into scratch from the caching allocator) and run cuBLAS with bf16 inputs, f32 accumulation
// and f32 outputs (beta = 1 accumulates into f32 gradients). Attention with head dim 64 or 128
// runs the FlashAttention kernels on bf16 copies of q, k, v instead (ops::AttentionSaved). Tensors
// stay f32 everywhere: activations, master weights, gradients and Adam state; every other op runs
// in f32. The cpu ignores the scope: its products stay f32 (OpenBLAS has no bf16 GEMM worth using).
#pragma once
#include <string>

namespace qkv::ops {

enum class MatmulPrecision { f32, bf16 };
// "f32" or "bf16"; anything else throws std::invalid_argument naming the value.
MatmulPrecision precision_from_name(const std::string& name);
const char* precision_name(MatmulPrecision p);

// This thread's precision for cuda matrix products (f32 outside every scope).
MatmulPrecision matmul_precision();

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
