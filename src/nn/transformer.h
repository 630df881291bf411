// Encoder and decoder layers of the Transformer, post-norm as in Vaswani et al. or pre-norm.
//   post-norm: x = LN(x + drop(sublayer(x)))
//   pre-norm:  x = x + drop(sublayer(LN(x)))   (and a final LayerNorm after the stack)
// A layer's feed-forward is dense (fc1, fc2) or, in an MoE layer, NLLB-MoE's experts
// (ffn.router.classifier, ffn.experts.expert_M.fc1 / fc2; see nn/moe.h).
#pragma once
#include "nn/layers.h"
#include "nn/moe.h"

namespace qkv::nn {

struct LayerShape {
  int64_t d_model = 256, heads = 4, d_ff = 1024;
  ops::Activation act = ops::Activation::relu;
  bool pre_norm = false;
  float ln_eps = 1e-5f;
};

// The MoE options of layer `layer` (from 0) of a stack: `moe` when it is an MoE layer, else
// dense ones.
MoeOptions layer_moe(const MoeOptions& moe, int64_t layer);

struct EncoderLayer {
  LayerShape shape;
  MultiHeadAttention self_attn;
  LayerNorm self_attn_layer_norm;
  FeedForward ffn;     // fc1, fc2 (dense layers only)
  MoeFeedForward moe;  // an MoE layer's feed-forward, else empty
  LayerNorm final_layer_norm;

  EncoderLayer() = default;
  // moe: dense (moe.experts == 0) or the layer's MoE options (see layer_moe).
  explicit EncoderLayer(const LayerShape& s, const MoeOptions& moe = {});
  bool is_moe() const { return !moe.experts.empty(); }
  void init(Rng& rng);
  // x [B, S, d]; mask: padding of the source.
  Var operator()(const Var& x, const ops::AttentionMask& mask, const Context& ctx) const;
  // The layer's output at the first position alone, [B, 1, d], for a model that reads only
  // that position (ViT's class token): the keys and values come from all of x, the queries,
  // the residuals and the feed-forward from the first position. Equals operator()'s first
  // position, at about a quarter of a dense layer's cost. Dense layers only (an MoE layer's
  // routing statistics count every position).
  Var first_position(const Var& x, const ops::AttentionMask& mask, const Context& ctx) const;
  void params(const std::string& prefix, ParamList& out) const;
  void linears(const std::string& prefix, LinearList& out);
};

// x [B, S, d] -> x[:, :1] [B, 1, d].
Var first_position_of(const Var& x);

struct DecoderLayer {
  LayerShape shape;
  MultiHeadAttention self_attn;
  LayerNorm self_attn_layer_norm;
  MultiHeadAttention encoder_attn;
  LayerNorm encoder_attn_layer_norm;
  FeedForward ffn;     // dense layers only
  MoeFeedForward moe;  // MoE layers only
  LayerNorm final_layer_norm;

  DecoderLayer() = default;
  explicit DecoderLayer(const LayerShape& s, const MoeOptions& moe = {});
  bool is_moe() const { return !moe.experts.empty(); }
  void init(Rng& rng);
  // x [B, T, d], memory [B, S, d]; self_mask is causal, memory_mask the source padding.
  Var operator()(const Var& x, const Var& memory, const ops::AttentionMask& self_mask,
                 const ops::AttentionMask& memory_mask, const Context& ctx) const;
  void params(const std::string& prefix, ParamList& out) const;
  void linears(const std::string& prefix, LinearList& out);
};

// One residual sub-block in the layer's norm position: post-norm LN(x + drop(f(x))) or
// pre-norm x + drop(f(LN(x))).
template <class F>
Var residual(const Var& x, const LayerNorm& ln, bool pre_norm, const Context& ctx, F&& f) {
  if (pre_norm) return add(x, ctx.drop(f(ln(x))));
  return ln(add(x, ctx.drop(f(x))));
}

}  // namespace qkv::nn
