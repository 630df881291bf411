// Test support: scaled dot-product attention and its gradients in float64 on the CPU, with the
// masks of ops::AttentionMask, as the reference for the FlashAttention tests (on the GPU and in
// the CPU emulation of the kernels).
#pragma once
#include <cstdint>
#include <vector>

namespace qkv::test {

struct AttentionCase {
  int64_t batch, heads, q_len, k_len;
  bool causal;
  std::vector<int32_t> key_lengths;  // empty: no padding
};

// Keys [0, key_end) are visible to query i of batch entry b.
int64_t key_end(const AttentionCase& c, int64_t b, int64_t i);

// out [B, H, Lq, D], lse [B, H, Lq] (-inf for a row that sees no key) and the gradients for dout.
struct AttentionReference {
  std::vector<double> out, lse, dq, dk, dv;
};
AttentionReference attention_reference(const AttentionCase& c, int64_t head_dim, float scale,
                                       const std::vector<float>& q, const std::vector<float>& k,
                                       const std::vector<float>& v, const std::vector<float>& dout);

// ||got - base - want|| / ||want|| (base may be empty; ||got - base|| when want is all zero);
// a non-finite element gives NaN, which fails every tolerance.
double norm_relative_error(const std::vector<float>& got, const std::vector<float>& base,
                           const std::vector<double>& want);

}  // namespace qkv::test
