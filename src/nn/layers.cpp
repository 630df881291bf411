#include "nn/layers.h"

#include <cmath>

#include "autograd/tape.h"
#include "nn/packed_linear.h"

namespace qkv::nn {

Linear::Linear(int64_t in, int64_t out, bool with_bias)
    : weight(make_param({out, in})), bias(with_bias ? make_param({out}) : Var()) {}

void Linear::init(Rng& rng) {
  init_xavier_uniform(weight.mutable_value(), rng);
  if (bias.defined()) bias.mutable_value().zero();
}

Var Linear::operator()(const Var& x) const {
  return (*this)(x, Context{});
}

Var Linear::operator()(const Var& x, const Context& ctx) const {
  if (packed && !Tape::active()) return (*packed)(x);
  if (!lora) return linear(x, weight, bias);
  Var in = ctx.training && lora->dropout > 0.f ? dropout(x, lora->dropout, *ctx.rng) : x;
  return lora_linear(x, weight, bias, in, lora->a, lora->b, lora->scaling);
}

void Linear::params(const std::string& prefix, ParamList& out) const {
  out.emplace_back(prefix + ".weight", weight);
  if (bias.defined()) out.emplace_back(prefix + ".bias", bias);
}

LayerNorm::LayerNorm(int64_t d, float eps)
    : weight(make_param({d})), bias(make_param({d})), eps(eps) {
  weight.mutable_value().fill(1.f);
}

void LayerNorm::params(const std::string& prefix, ParamList& out) const {
  out.emplace_back(prefix + ".weight", weight);
  out.emplace_back(prefix + ".bias", bias);
}

MultiHeadAttention::MultiHeadAttention(int64_t d_model, int64_t heads)
    : d_model(d_model),
      heads(heads),
      q_proj(d_model, d_model),
      k_proj(d_model, d_model),
      v_proj(d_model, d_model),
      out_proj(d_model, d_model) {
  check_shape(heads > 0 && d_model % heads == 0, "d_model " + std::to_string(d_model) +
                                                     " is not a multiple of heads " +
                                                     std::to_string(heads));
}

void MultiHeadAttention::init(Rng& rng) {
  for (Linear* l : {&q_proj, &k_proj, &v_proj, &out_proj}) l->init(rng);
}

Var MultiHeadAttention::split_heads(const Var& x) const {
  int64_t b = x.shape()[0], len = x.shape()[1];
  return permute(reshape(x, {b, len, heads, d_model / heads}), {0, 2, 1, 3});
}

Var MultiHeadAttention::merge_heads(const Var& x) const {
  int64_t b = x.shape()[0], len = x.shape()[2];
  return reshape(permute(x, {0, 2, 1, 3}), {b, len, d_model});
}

Var MultiHeadAttention::operator()(const Var& query, const Var& memory,
                                   const ops::AttentionMask& mask, const Context& ctx) const {
  Var q = split_heads(q_proj(query, ctx));   // [B, H, Lq, Dh]
  Var k = split_heads(k_proj(memory, ctx));  // [B, H, Lk, Dh]
  Var v = split_heads(v_proj(memory, ctx));  // [B, H, Lk, Dh]
  float scale = 1.f / std::sqrt(float(d_model / heads));
  return out_proj(merge_heads(attention(q, k, v, mask, scale, ctx.attention)), ctx);
}

void MultiHeadAttention::params(const std::string& prefix, ParamList& out) const {
  q_proj.params(prefix + ".q_proj", out);
  k_proj.params(prefix + ".k_proj", out);
  v_proj.params(prefix + ".v_proj", out);
  out_proj.params(prefix + ".out_proj", out);
}

void MultiHeadAttention::linears(const std::string& prefix, LinearList& out) {
  out.emplace_back(prefix + ".q_proj", &q_proj);
  out.emplace_back(prefix + ".k_proj", &k_proj);
  out.emplace_back(prefix + ".v_proj", &v_proj);
  out.emplace_back(prefix + ".out_proj", &out_proj);
}

FeedForward::FeedForward(int64_t d_model, int64_t d_ff, ops::Activation act)
    : fc1(d_model, d_ff), fc2(d_ff, d_model), act(act) {}

void FeedForward::init(Rng& rng) {
  fc1.init(rng);
  fc2.init(rng);
}

Var FeedForward::operator()(const Var& x, const Context& ctx) const {
  return fc2(ctx.drop(activation(act, fc1(x, ctx))), ctx);
}

void FeedForward::params(const std::string& prefix, ParamList& out) const {
  fc1.params(prefix + ".fc1", out);
  fc2.params(prefix + ".fc2", out);
}

void FeedForward::linears(const std::string& prefix, LinearList& out) {
  out.emplace_back(prefix + ".fc1", &fc1);
  out.emplace_back(prefix + ".fc2", &fc2);
}

Tensor sinusoidal_positions(int64_t len, int64_t d, PositionLayout layout) {
  Tensor pe = Tensor::empty({len, d});
  float* p = pe.data<float>();
  int64_t half = (d + 1) / 2;  // frequencies
  for (int64_t pos = 0; pos < len; ++pos)
    for (int64_t k = 0; k < half; ++k) {
      double angle = double(pos) / std::pow(10000.0, double(2 * k) / double(d));
      bool interleaved = layout == PositionLayout::interleaved;
      int64_t sin_at = interleaved ? 2 * k : k, cos_at = interleaved ? 2 * k + 1 : half + k;
      p[pos * d + sin_at] = float(std::sin(angle));
      if (2 * k + 1 < d) p[pos * d + cos_at] = float(std::cos(angle));
    }
  return pe;
}

PositionLayout position_layout_from_name(const std::string& name) {
  if (name == "interleaved") return PositionLayout::interleaved;
  if (name == "halves") return PositionLayout::halves;
  throw std::invalid_argument("unknown position layout '" + name +
                              "' (expected interleaved or halves)");
}

}  // namespace qkv::nn
