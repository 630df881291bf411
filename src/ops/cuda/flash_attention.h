// Launchers of the FlashAttention kernels (ops/cuda/flash_attention_{forward,backward}.cu); the
// checks live in ops/flash_attention.cpp. Plain C++: included by host code of every build, but
// defined only in CUDA builds. All pointers are device pointers to contiguous tensors; the
// kernels are queued on the qkv stream (ops/cuda/context.h).
#pragma once
#include <cstdint>

namespace qkv::ops::cuda {

struct FlashShape {
  int batch, heads, q_len, k_len, head_dim;  // head_dim 64 or 128; q_len, k_len >= 1
  bool causal;
  const int32_t* key_lengths;  // [batch] on the device, or null (no padding)
  float scale;
  bool bf16;  // element type of q, k, v, out, dout: bf16, else f16
};

// out [B, H, Lq, D] (input type) and lse f32 [B, H, Lq] (natural log; -inf for a row that sees
// no key) from q [B, H, Lq, D], k and v [B, H, Lk, D].
void flash_forward(const FlashShape& s, const void* q, const void* k, const void* v, void* out,
                   float* lse);

// A gradient to add into, shaped like its input: f32 or the input type; data null: not needed.
struct FlashGrad {
  void* data;
  bool f32;
};

// dq (f32), dk, dv += the gradients of the loss whose gradient at out is dout. delta is scratch
// f32 [B, H, Lq]. dq is accumulated with atomic adds.
void flash_backward(const FlashShape& s, const void* dout, const void* q, const void* k,
                    const void* v, const void* out, const float* lse, float* delta, float* dq,
                    FlashGrad dk, FlashGrad dv);

// dst (bf16 when bf16, else f16) [n] += src f32 [n].
void add_f32_into_half(const float* src, void* dst, int64_t n, bool bf16);

}  // namespace qkv::ops::cuda
