// Attention of one (batch, head) over a short sequence: at most 32 keys, a head dim of 8, 16, 32
// or 64 (a ViT's 17 patches and class token of head dim 16). Loops whose sums stay in registers
// instead of the BLAS calls of ops/cpu/attention_naive.cpp, which at these sizes cost more in
// packing and calling than in arithmetic.
#pragma once
#include <cstdint>

#include "ops/kernels.h"

namespace qkv::ops::cpu {

constexpr int64_t kShortAttentionKeys = 32;  // the most keys short_attention_* take

// Whether short_attention_* take these shapes.
bool short_attention_fits(const AttentionDims& d);

// p [Lq, Lk] = softmax(scale * q [Lq, D] @ k^T) over the visible keys, out [Lq, D] = p @ v.
void short_attention_forward(const AttentionDims& d, int64_t b, const float* q, const float* k,
                             const float* v, float* out, float* p);

// The gradients of short_attention_forward added to dq, dk and dv (each may be null), from the
// saved p; ds is scratch of Lq * kShortAttentionKeys floats.
void short_attention_backward(const AttentionDims& d, const float* dout, const float* q,
                              const float* k, const float* v, const float* out, const float* p,
                              float* ds, float* dq, float* dk, float* dv);

}  // namespace qkv::ops::cpu
