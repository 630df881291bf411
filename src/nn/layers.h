// The building blocks of a Transformer: Linear, LayerNorm, multi-head attention and the
// position-wise feed-forward network. Activations are batch-first [batch, len, d_model].
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/functions.h"
#include "nn/params.h"

namespace qkv::nn {

struct MoeRecord;     // nn/moe.h
struct PackedLinear;  // nn/packed_linear.h

// What a forward pass needs besides its inputs.
struct Context {
  bool training = false;
  float dropout = 0.f;  // applied only while training
  Rng* rng = nullptr;   // dropout masks
  ops::AttentionImpl attention = ops::AttentionImpl::automatic;
  // Mixture-of-Experts layers (nn/moe.h) record their routing and auxiliary losses here when
  // set, and multiply their routers' inputs by noise U(1 - j, 1 + j) while training.
  MoeRecord* moe = nullptr;
  float moe_jitter = 0.f;

  float dropout_p() const { return training ? dropout : 0.f; }
  // Dropout with this context's rate (identity outside training).
  Var drop(const Var& x) const {
    return dropout_p() > 0.f ? qkv::dropout(x, dropout_p(), *rng) : x;
  }
};

// A LoRA update of one Linear (nn/lora.h): y += scaling * B (A dropout(x)).
struct LoraWeights {
  Var a;  // [r, in]
  Var b;  // [out, r]
  float scaling = 1.f;
  float dropout = 0.f;  // on the update's input, while training
};

struct Linear {
  Var weight;  // [out, in]
  Var bias;    // [out], or undefined
  // The active LoRA adapter's update of this layer (nn/lora.h attaches it), or null.
  std::shared_ptr<const LoraWeights> lora;
  // Inference in a compute type (nn/compute_type.h): weight, bias and LoRA packed for it, used
  // whenever no tape records; null: the f32 product.
  std::shared_ptr<const PackedLinear> packed;
  Linear() = default;
  Linear(int64_t in, int64_t out, bool with_bias = true);
  void init(Rng& rng);  // Xavier-uniform weight, zero bias
  // x [..., in] -> [..., out], with the LoRA update when one is attached (no dropout).
  Var operator()(const Var& x) const;
  // The same with the LoRA dropout of a training context.
  Var operator()(const Var& x, const Context& ctx) const;
  void params(const std::string& prefix, ParamList& out) const;
};

// Linear layers by module name (a parameter's name without ".weight"), for LoRA.
using LinearList = std::vector<std::pair<std::string, Linear*>>;

struct LayerNorm {
  Var weight;  // [d], ones
  Var bias;    // [d], zeros
  float eps = 1e-5f;
  LayerNorm() = default;
  explicit LayerNorm(int64_t d, float eps = 1e-5f);
  Var operator()(const Var& x) const { return layer_norm(x, weight, bias, eps); }
  void params(const std::string& prefix, ParamList& out) const;
};

// Multi-head attention with separate q/k/v/out projections (Hugging Face's names).
struct MultiHeadAttention {
  int64_t d_model = 0, heads = 0;
  Linear q_proj, k_proj, v_proj, out_proj;
  MultiHeadAttention() = default;
  MultiHeadAttention(int64_t d_model, int64_t heads);
  void init(Rng& rng);
  // query [B, Lq, d], memory [B, Lk, d] (memory == query for self-attention) -> [B, Lq, d].
  Var operator()(const Var& query, const Var& memory, const ops::AttentionMask& mask,
                 const Context& ctx) const;
  // [B, L, d] -> [B, H, L, d/H] and back.
  Var split_heads(const Var& x) const;
  Var merge_heads(const Var& x) const;
  void params(const std::string& prefix, ParamList& out) const;
  void linears(const std::string& prefix, LinearList& out);
};

// fc2(dropout(act(fc1(x)))).
struct FeedForward {
  Linear fc1, fc2;
  ops::Activation act = ops::Activation::relu;
  FeedForward() = default;
  FeedForward(int64_t d_model, int64_t d_ff, ops::Activation act);
  void init(Rng& rng);
  Var operator()(const Var& x, const Context& ctx) const;
  void params(const std::string& prefix, ParamList& out) const;
  void linears(const std::string& prefix, LinearList& out);
};

// Sinusoidal position encodings [len, d] (Vaswani et al.) with frequencies
// w_k = 1 / 10000^(2k/d), k < d/2. interleaved (the paper's): PE[p, 2k] = sin(p w_k),
// PE[p, 2k+1] = cos(p w_k). halves (Marian's, Hugging Face's MarianMTModel): PE[p, k] =
// sin(p w_k), PE[p, d/2 + k] = cos(p w_k). The two differ by a fixed permutation of the d
// columns.
enum class PositionLayout { interleaved, halves };
PositionLayout position_layout_from_name(const std::string& name);  // "interleaved", "halves"
Tensor sinusoidal_positions(int64_t len, int64_t d,
                            PositionLayout layout = PositionLayout::interleaved);

}  // namespace qkv::nn
