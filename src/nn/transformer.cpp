#include "nn/transformer.h"

namespace qkv::nn {

EncoderLayer::EncoderLayer(const LayerShape& s)
    : shape(s),
      self_attn(s.d_model, s.heads),
      self_attn_layer_norm(s.d_model, s.ln_eps),
      ffn(s.d_model, s.d_ff, s.act),
      final_layer_norm(s.d_model, s.ln_eps) {}

void EncoderLayer::init(Rng& rng) {
  self_attn.init(rng);
  ffn.init(rng);
}

Var EncoderLayer::operator()(const Var& x, const ops::AttentionMask& mask,
                             const Context& ctx) const {
  Var h = residual(x, self_attn_layer_norm, shape.pre_norm, ctx,
                   [&](const Var& y) { return self_attn(y, y, mask, ctx); });
  return residual(h, final_layer_norm, shape.pre_norm, ctx,
                  [&](const Var& y) { return ffn(y, ctx); });
}

void EncoderLayer::params(const std::string& prefix, ParamList& out) const {
  self_attn.params(prefix + ".self_attn", out);
  self_attn_layer_norm.params(prefix + ".self_attn_layer_norm", out);
  ffn.params(prefix, out);
  final_layer_norm.params(prefix + ".final_layer_norm", out);
}

void EncoderLayer::linears(const std::string& prefix, LinearList& out) {
  self_attn.linears(prefix + ".self_attn", out);
  ffn.linears(prefix, out);
}

DecoderLayer::DecoderLayer(const LayerShape& s)
    : shape(s),
      self_attn(s.d_model, s.heads),
      self_attn_layer_norm(s.d_model, s.ln_eps),
      encoder_attn(s.d_model, s.heads),
      encoder_attn_layer_norm(s.d_model, s.ln_eps),
      ffn(s.d_model, s.d_ff, s.act),
      final_layer_norm(s.d_model, s.ln_eps) {}

void DecoderLayer::init(Rng& rng) {
  self_attn.init(rng);
  encoder_attn.init(rng);
  ffn.init(rng);
}

Var DecoderLayer::operator()(const Var& x, const Var& memory, const ops::AttentionMask& self_mask,
                             const ops::AttentionMask& memory_mask, const Context& ctx) const {
  Var h = residual(x, self_attn_layer_norm, shape.pre_norm, ctx,
                   [&](const Var& y) { return self_attn(y, y, self_mask, ctx); });
  h = residual(h, encoder_attn_layer_norm, shape.pre_norm, ctx,
               [&](const Var& y) { return encoder_attn(y, memory, memory_mask, ctx); });
  return residual(h, final_layer_norm, shape.pre_norm, ctx,
                  [&](const Var& y) { return ffn(y, ctx); });
}

void DecoderLayer::params(const std::string& prefix, ParamList& out) const {
  self_attn.params(prefix + ".self_attn", out);
  self_attn_layer_norm.params(prefix + ".self_attn_layer_norm", out);
  encoder_attn.params(prefix + ".encoder_attn", out);
  encoder_attn_layer_norm.params(prefix + ".encoder_attn_layer_norm", out);
  ffn.params(prefix, out);
  final_layer_norm.params(prefix + ".final_layer_norm", out);
}

void DecoderLayer::linears(const std::string& prefix, LinearList& out) {
  self_attn.linears(prefix + ".self_attn", out);
  encoder_attn.linears(prefix + ".encoder_attn", out);
  ffn.linears(prefix, out);
}

}  // namespace qkv::nn
