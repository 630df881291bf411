#include "nn/transformer.h"

#include <stdexcept>

namespace qkv::nn {

namespace {

// The layer's feed-forward: x [..., d] -> [..., d].
Var feed_forward(const FeedForward& ffn, const MoeFeedForward& moe, const Var& x,
                 const Context& ctx) {
  return moe.experts.empty() ? ffn(x, ctx) : moe(x, ctx);
}

// NLLB-MoE's expert MLPs (fc2(act(fc1 x)), biased, dropout on the hidden activations as the
// dense feed-forward has), or none for a dense layer.
MoeFeedForward make_moe(const LayerShape& s, const MoeOptions& options) {
  if (!options.enabled()) return {};
  MoeFeedForward moe(options, MoeNames::nllb, s.d_model, s.d_ff, s.act, /*gated=*/false,
                     /*bias=*/true);
  moe.hidden_dropout = true;
  return moe;
}

}  // namespace

MoeOptions layer_moe(const MoeOptions& moe, int64_t layer) {
  return moe.is_moe_layer(layer) ? moe : MoeOptions{};
}

EncoderLayer::EncoderLayer(const LayerShape& s, const MoeOptions& moe_options)
    : shape(s),
      self_attn(s.d_model, s.heads),
      self_attn_layer_norm(s.d_model, s.ln_eps),
      moe(make_moe(s, moe_options)),
      final_layer_norm(s.d_model, s.ln_eps) {
  if (!is_moe()) ffn = FeedForward(s.d_model, s.d_ff, s.act);
}

void EncoderLayer::init(Rng& rng) {
  self_attn.init(rng);
  if (is_moe())
    moe.init(rng);
  else
    ffn.init(rng);
}

Var EncoderLayer::operator()(const Var& x, const ops::AttentionMask& mask,
                             const Context& ctx) const {
  Var h = residual(x, self_attn_layer_norm, shape.pre_norm, ctx,
                   [&](const Var& y) { return self_attn(y, y, mask, ctx); });
  return residual(h, final_layer_norm, shape.pre_norm, ctx,
                  [&](const Var& y) { return feed_forward(ffn, moe, y, ctx); });
}

Var EncoderLayer::first_position(const Var& x, const ops::AttentionMask& mask,
                                 const Context& ctx) const {
  if (is_moe()) throw std::logic_error("EncoderLayer::first_position: an MoE layer");
  Var first = first_position_of(x);  // [B, 1, d]
  Var h;
  if (shape.pre_norm) {
    Var y = self_attn_layer_norm(x);
    h = add(first, ctx.drop(self_attn(first_position_of(y), y, mask, ctx)));
  } else {
    h = self_attn_layer_norm(add(first, ctx.drop(self_attn(first, x, mask, ctx))));
  }
  return residual(h, final_layer_norm, shape.pre_norm, ctx,
                  [&](const Var& y) { return feed_forward(ffn, moe, y, ctx); });
}

Var first_position_of(const Var& x) {
  int64_t len = x.shape()[1];
  return len == 1 ? x : split(x, {1, len - 1}, 1)[0];
}

void EncoderLayer::params(const std::string& prefix, ParamList& out) const {
  self_attn.params(prefix + ".self_attn", out);
  self_attn_layer_norm.params(prefix + ".self_attn_layer_norm", out);
  if (is_moe())
    moe.params(prefix, out);
  else
    ffn.params(prefix, out);
  final_layer_norm.params(prefix + ".final_layer_norm", out);
}

void EncoderLayer::linears(const std::string& prefix, LinearList& out) {
  self_attn.linears(prefix + ".self_attn", out);
  if (is_moe())
    moe.linears(prefix, out);
  else
    ffn.linears(prefix, out);
}

DecoderLayer::DecoderLayer(const LayerShape& s, const MoeOptions& moe_options)
    : shape(s),
      self_attn(s.d_model, s.heads),
      self_attn_layer_norm(s.d_model, s.ln_eps),
      encoder_attn(s.d_model, s.heads),
      encoder_attn_layer_norm(s.d_model, s.ln_eps),
      moe(make_moe(s, moe_options)),
      final_layer_norm(s.d_model, s.ln_eps) {
  if (!is_moe()) ffn = FeedForward(s.d_model, s.d_ff, s.act);
}

void DecoderLayer::init(Rng& rng) {
  self_attn.init(rng);
  encoder_attn.init(rng);
  if (is_moe())
    moe.init(rng);
  else
    ffn.init(rng);
}

Var DecoderLayer::operator()(const Var& x, const Var& memory, const ops::AttentionMask& self_mask,
                             const ops::AttentionMask& memory_mask, const Context& ctx) const {
  Var h = residual(x, self_attn_layer_norm, shape.pre_norm, ctx,
                   [&](const Var& y) { return self_attn(y, y, self_mask, ctx); });
  h = residual(h, encoder_attn_layer_norm, shape.pre_norm, ctx,
               [&](const Var& y) { return encoder_attn(y, memory, memory_mask, ctx); });
  return residual(h, final_layer_norm, shape.pre_norm, ctx,
                  [&](const Var& y) { return feed_forward(ffn, moe, y, ctx); });
}

void DecoderLayer::params(const std::string& prefix, ParamList& out) const {
  self_attn.params(prefix + ".self_attn", out);
  self_attn_layer_norm.params(prefix + ".self_attn_layer_norm", out);
  encoder_attn.params(prefix + ".encoder_attn", out);
  encoder_attn_layer_norm.params(prefix + ".encoder_attn_layer_norm", out);
  if (is_moe())
    moe.params(prefix, out);
  else
    ffn.params(prefix, out);
  final_layer_norm.params(prefix + ".final_layer_norm", out);
}

void DecoderLayer::linears(const std::string& prefix, LinearList& out) {
  self_attn.linears(prefix + ".self_attn", out);
  encoder_attn.linears(prefix + ".encoder_attn", out);
  if (is_moe())
    moe.linears(prefix, out);
  else
    ffn.linears(prefix, out);
}

}  // namespace qkv::nn
