#include "nn/gpt.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace qkv::nn {

namespace {

// Key/value heads [B, Hkv, L, Dh] -> [B, Hkv * groups, L, Dh], each head repeated `groups` times
// in a row (grouped-query attention: query head h reads key head h / groups), by broadcasting.
Var repeat_heads(const Var& x, int64_t groups) {
  if (groups == 1) return x;
  const Shape& s = x.shape();
  Var ones(Tensor::full({1, 1, groups, 1}, 1.f).to(x.value().device()));
  Var wide = mul(reshape(x, {s[0], s[1], 1, s[2] * s[3]}), ones);  // [B, Hkv, groups, L * Dh]
  return reshape(wide, {s[0], s[1] * groups, s[2], s[3]});
}

// The MLP's activation: silu for swiglu (gated), else the named one.
ops::Activation mlp_activation(const GptConfig& c) {
  return c.swiglu() ? ops::Activation::silu : ops::activation_from_name(c.mlp);
}

// i32 [B, L]: offsets[b] + l.
Tensor position_ids(const std::vector<int64_t>& offsets, int64_t len, Device device) {
  std::vector<int32_t> ids;
  ids.reserve(offsets.size() * size_t(len));
  for (int64_t offset : offsets)
    for (int64_t l = 0; l < len; ++l) ids.push_back(int32_t(offset + l));
  return Tensor::from_vector(ids, {int64_t(offsets.size()), len}).to(device);
}

}  // namespace

Norm::Norm(int64_t d, bool rms, float eps)
    : weight(make_param({d})), bias(rms ? Var() : make_param({d})), eps(eps), rms(rms) {
  weight.mutable_value().fill(1.f);
}

Var Norm::operator()(const Var& x) const {
  return rms ? rms_norm(x, weight, eps) : layer_norm(x, weight, bias, eps);
}

void Norm::params(const std::string& prefix, ParamList& out) const {
  out.emplace_back(prefix + ".weight", weight);
  if (bias.defined()) out.emplace_back(prefix + ".bias", bias);
}

void GptBlock::params(const std::string& prefix, ParamList& out) const {
  input_layernorm.params(prefix + ".input_layernorm", out);
  q_proj.params(prefix + ".self_attn.q_proj", out);
  k_proj.params(prefix + ".self_attn.k_proj", out);
  v_proj.params(prefix + ".self_attn.v_proj", out);
  o_proj.params(prefix + ".self_attn.o_proj", out);
  post_attention_layernorm.params(prefix + ".post_attention_layernorm", out);
  if (is_moe()) return moe.params(prefix, out);
  if (gate_proj.weight.defined()) gate_proj.params(prefix + ".mlp.gate_proj", out);
  up_proj.params(prefix + ".mlp.up_proj", out);
  down_proj.params(prefix + ".mlp.down_proj", out);
}

void GptBlock::linears(const std::string& prefix, LinearList& out) {
  out.emplace_back(prefix + ".self_attn.q_proj", &q_proj);
  out.emplace_back(prefix + ".self_attn.k_proj", &k_proj);
  out.emplace_back(prefix + ".self_attn.v_proj", &v_proj);
  out.emplace_back(prefix + ".self_attn.o_proj", &o_proj);
  if (is_moe()) return moe.linears(prefix, out);
  if (gate_proj.weight.defined()) out.emplace_back(prefix + ".mlp.gate_proj", &gate_proj);
  out.emplace_back(prefix + ".mlp.up_proj", &up_proj);
  out.emplace_back(prefix + ".mlp.down_proj", &down_proj);
}

Gpt::Gpt(const GptConfig& config)
    : config_(config),
      embed_tokens_(make_param({config.vocab_size, config.d_model})),
      norm_(config.d_model, config.rms_norm(), config.norm_eps) {
  config.check("GPT config");
  const GptConfig& c = config;
  if (!c.rope()) embed_positions_ = make_param({c.context_length, c.d_model});
  int64_t d = c.d_model, kv = c.kv_head_count() * c.head_dim(), ff = c.ff_width();
  for (int64_t i = 0; i < c.layers; ++i) {
    GptBlock b;
    b.input_layernorm = Norm(d, c.rms_norm(), c.norm_eps);
    b.post_attention_layernorm = Norm(d, c.rms_norm(), c.norm_eps);
    b.q_proj = Linear(d, d, c.bias), b.k_proj = Linear(d, kv, c.bias);
    b.v_proj = Linear(d, kv, c.bias), b.o_proj = Linear(d, d, c.bias);
    if (c.moe.is_moe_layer(i)) {
      b.moe =
          MoeFeedForward(c.moe, MoeNames::mixtral, d, ff, mlp_activation(c), c.swiglu(), c.bias);
    } else {
      if (c.swiglu()) b.gate_proj = Linear(d, ff, c.bias);
      b.up_proj = Linear(d, ff, c.bias), b.down_proj = Linear(ff, d, c.bias);
    }
    layers_.push_back(std::move(b));
  }
  if (!c.tie_embeddings) lm_head_ = Linear(d, c.vocab_size, false);
}

void Gpt::init(Rng& rng) {
  const float std = 0.02f, residual_std = std / std::sqrt(2.f * float(config_.layers));
  for (auto& [name, p] : params()) {
    Tensor& t = p.mutable_value();
    bool matrix = t.rank() == 2;
    bool into_residual = name.ends_with("o_proj.weight") || name.ends_with("down_proj.weight") ||
                         name.ends_with(".w2.weight");
    if (matrix)
      init_normal(t, rng, into_residual ? residual_std : std);
    else if (name.ends_with("norm.weight") || name.ends_with("layernorm.weight"))
      t.fill(1.f);
    else
      t.zero();
  }
}

ParamList Gpt::params() const {
  ParamList out;
  out.emplace_back("model.embed_tokens.weight", embed_tokens_);
  if (embed_positions_.defined())
    out.emplace_back("model.embed_positions.weight", embed_positions_);
  for (size_t i = 0; i < layers_.size(); ++i)
    layers_[i].params("model.layers." + std::to_string(i), out);
  norm_.params("model.norm", out);
  if (!config_.tie_embeddings) lm_head_.params("lm_head", out);
  return out;
}

LinearList Gpt::linears() {
  LinearList out;
  for (size_t i = 0; i < layers_.size(); ++i)
    layers_[i].linears("model.layers." + std::to_string(i), out);
  return out;
}

void Gpt::to(Device device) {
  move_params(params(), device);
}

Var Gpt::attention(size_t layer, const Var& x, const Tensor& positions, const Context& ctx,
                   const Inference* inference) const {
  const GptConfig& c = config_;
  const GptBlock& b = layers_[layer];
  int64_t batch = x.shape()[0], len = x.shape()[1], dh = c.head_dim();
  int64_t heads = c.heads, kv_heads = c.kv_head_count();
  Var q_lin, k_lin, v_lin;  // [B, L, H * Dh], [B, L, Hkv * Dh] twice
  if (inference) {
    std::vector<Var> qkv = split(inference->packed->layers[layer].qkv(x),
                                 {heads * dh, kv_heads * dh, kv_heads * dh}, 2);
    q_lin = qkv[0], k_lin = qkv[1], v_lin = qkv[2];
  } else {
    q_lin = b.q_proj(x, ctx), k_lin = b.k_proj(x, ctx), v_lin = b.v_proj(x, ctx);
  }
  // Heads in [B, L, H, Dh]; RoPE needs only each vector's position, so it rotates them as
  // [B * L, H, 1, Dh] with positions [B * L, 1].
  auto to_heads_rotated = [&](const Var& y, int64_t h, bool rotate) {
    Var r = reshape(y, {batch * len, h, 1, dh});
    if (rotate) r = rope(r, positions.reshape({batch * len, 1}), c.rope_frequencies());
    return reshape(r, {batch, len, h, dh});
  };
  Var q = to_heads_rotated(q_lin, heads, c.rope());
  Var k = to_heads_rotated(k_lin, kv_heads, c.rope());
  Var v = to_heads_rotated(v_lin, kv_heads, false);
  auto to_heads = [](const Var& y) { return permute(y, {0, 2, 1, 3}); };  // [B, H, L, Dh]
  ops::AttentionMask mask{true, Tensor()};
  Var keys = to_heads(k), values = to_heads(v);
  if (inference) {
    // Rows write their new keys and values at their own lengths; a prefill (every row empty)
    // attends to its own keys, a step (one token) to the cache up to each row's new length.
    KvCache& cache = *inference->cache;
    Tensor k_rows = k.value().reshape({batch * len, kv_heads * dh});
    Tensor v_rows = v.value().reshape({batch * len, kv_heads * dh});
    std::vector<int32_t> key_lengths;
    for (int64_t r = 0; r < batch; ++r) {
      Tensor k_cache = cache.k[layer].slice_rows(r, r + 1);
      Tensor v_cache = cache.v[layer].slice_rows(r, r + 1);
      for (int64_t l = 0; l < len; ++l) {
        Shape one{1, kv_heads, 1, dh};
        int64_t row = r * len + l, pos = cache.lengths[size_t(r)] + l;
        ops::kv_cache_write(k_cache, k_rows.slice_rows(row, row + 1).reshape(one), pos);
        ops::kv_cache_write(v_cache, v_rows.slice_rows(row, row + 1).reshape(one), pos);
      }
      key_lengths.push_back(int32_t(cache.lengths[size_t(r)] + cache.new_lengths[size_t(r)]));
    }
    mask.key_lengths = Tensor::from_vector(key_lengths, {batch}).to(x.value().device());
    if (len == 1) {
      mask.causal = false;
      keys = Var(cache.k[layer]), values = Var(cache.v[layer]);
    }
  }
  Var o = qkv::attention(to_heads(q), repeat_heads(keys, heads / kv_heads),
                         repeat_heads(values, heads / kv_heads), mask, 1.f / std::sqrt(float(dh)),
                         ctx.attention);  // [B, H, L, Dh]
  Var merged = reshape(permute(o, {0, 2, 1, 3}), {batch, len, c.d_model});
  return inference ? inference->packed->layers[layer].o_proj(merged) : b.o_proj(merged, ctx);
}

Var Gpt::mlp(size_t layer, const Var& x, const Context& ctx, const Inference* inference) const {
  const GptBlock& b = layers_[layer];
  if (b.is_moe()) return inference ? b.moe(x, inference->packed->layers[layer].moe) : b.moe(x, ctx);
  bool swiglu = config_.swiglu();
  ops::Activation act = mlp_activation(config_);
  if (inference) {
    const PackedGpt::Layer& p = inference->packed->layers[layer];
    Var h = p.gate_up(x);  // [B, L, 2 ff] (gate, up) or [B, L, ff]
    if (swiglu) {
      int64_t ff = config_.ff_width();
      std::vector<Var> gate_up = split(h, {ff, ff}, 2);
      h = mul(activation(act, gate_up[0]), gate_up[1]);
    } else {
      h = activation(act, h);
    }
    return p.down_proj(h);
  }
  if (swiglu) return b.down_proj(mul(activation(act, b.gate_proj(x, ctx)), b.up_proj(x, ctx)), ctx);
  return b.down_proj(activation(act, b.up_proj(x, ctx)), ctx);
}

Var Gpt::run(const Tensor& ids, const Tensor& positions, const Context& ctx,
             const Inference* inference) const {
  Var x = embedding(ids, embed_tokens_);  // [B, L, d]
  if (embed_positions_.defined()) x = add(x, embedding(positions, embed_positions_));
  x = ctx.drop(x);
  for (size_t i = 0; i < layers_.size(); ++i) {
    const GptBlock& b = layers_[i];
    x = add(x, ctx.drop(attention(i, b.input_layernorm(x), positions, ctx, inference)));
    x = add(x, ctx.drop(mlp(i, b.post_attention_layernorm(x), ctx, inference)));
  }
  return norm_(x);
}

Var Gpt::hidden(const Tensor& ids, const Context& ctx) const {
  check_shape(ids.rank() == 2, "GPT input ids must be [batch, length]");
  int64_t batch = ids.size(0), len = ids.size(1);
  if (len > config_.context_length)
    throw std::invalid_argument("a sequence of " + std::to_string(len) +
                                " tokens is longer than the context-length " +
                                std::to_string(config_.context_length));
  std::vector<int64_t> zeros(size_t(batch), 0);
  return run(ids, position_ids(zeros, len, device()), ctx, nullptr);
}

Var Gpt::logits(const Var& hidden) const {
  return linear(hidden, output_weight(), Var());
}

KvCache Gpt::new_cache(int64_t rows, int64_t capacity) const {
  if (capacity < 1 || capacity > config_.context_length)
    throw std::invalid_argument("a KV cache of " + std::to_string(capacity) +
                                " positions: expected 1 to context-length " +
                                std::to_string(config_.context_length));
  KvCache cache;
  cache.capacity = capacity;
  cache.lengths.assign(size_t(rows), 0);
  // Zeros, not garbage: masked keys must not turn into NaN when weighted by 0.
  Shape shape{rows, config_.kv_head_count(), capacity, config_.head_dim()};
  for (int64_t i = 0; i < config_.layers; ++i) {
    cache.k.push_back(Tensor::zeros(shape, DType::f32, device()));
    cache.v.push_back(Tensor::zeros(shape, DType::f32, device()));
  }
  return cache;
}

void keep_cache_rows(KvCache& cache, const std::vector<int32_t>& rows) {
  int64_t m = int64_t(rows.size()), longest = 0;
  std::vector<int64_t> lengths;
  for (int32_t r : rows) {
    lengths.push_back(cache.lengths[size_t(r)]);
    longest = std::max(longest, lengths.back());
  }
  Tensor index = Tensor::from_vector(rows, {m}).to(cache.k[0].device());
  for (auto* tensors : {&cache.k, &cache.v})
    for (Tensor& t : *tensors) {
      ops::kv_cache_gather(t, index, longest, t);  // in place: rows only move down
      t = t.slice_rows(0, m);
    }
  cache.lengths = std::move(lengths);
}

void copy_cache_row(const KvCache& source, int64_t from, KvCache& cache, int64_t to) {
  check_shape(source.capacity == cache.capacity && source.k.size() == cache.k.size(),
              "copy_cache_row: caches of different shapes");
  int64_t len = source.lengths[size_t(from)];
  Tensor index =
      Tensor::from_vector(std::vector<int32_t>{int32_t(from)}, {1}).to(cache.k[0].device());
  for (size_t i = 0; i < cache.k.size(); ++i) {
    Tensor k_row = cache.k[i].slice_rows(to, to + 1), v_row = cache.v[i].slice_rows(to, to + 1);
    ops::kv_cache_gather(source.k[i], index, len, k_row);
    ops::kv_cache_gather(source.v[i], index, len, v_row);
  }
  cache.lengths[size_t(to)] = len;
}

PackedGpt Gpt::pack(ops::ComputeType type) const {
  PackedGpt p;
  for (const GptBlock& b : layers_) {
    PackedGpt::Layer l;
    l.qkv = PackedLinear({&b.q_proj, &b.k_proj, &b.v_proj}, type);
    l.o_proj = PackedLinear({&b.o_proj}, type);
    if (b.is_moe()) {
      l.moe = b.moe.pack(type);
    } else {
      std::vector<const Linear*> gate_up{&b.up_proj};
      if (config_.swiglu()) gate_up = {&b.gate_proj, &b.up_proj};
      l.gate_up = PackedLinear(gate_up, type), l.down_proj = PackedLinear({&b.down_proj}, type);
    }
    p.layers.push_back(std::move(l));
  }
  p.lm_head = PackedLinear(output_weight().value(), Tensor(), type);
  return p;
}

Tensor Gpt::step(const Tensor& ids, const std::vector<int64_t>& lengths, KvCache& cache,
                 const PackedGpt& packed) const {
  int64_t batch = ids.size(0), len = ids.size(1);
  check_shape(ids.rank() == 2 && size_t(batch) == cache.lengths.size() &&
                  lengths.size() == cache.lengths.size(),
              "Gpt::step: ids [rows, length] and lengths must match the cache's rows");
  if (len > cache.capacity)  // padding is written too
    throw std::invalid_argument("Gpt::step: " + std::to_string(len) +
                                " tokens per row exceed the " + std::to_string(cache.capacity) +
                                "-position cache");
  bool prefill = true;
  for (size_t r = 0; r < lengths.size(); ++r) {
    if (lengths[r] < 1 || lengths[r] > len)
      throw std::invalid_argument("Gpt::step: row length " + std::to_string(lengths[r]) +
                                  " outside [1, " + std::to_string(len) + "]");
    if (cache.lengths[r] + lengths[r] > cache.capacity)
      throw std::invalid_argument("Gpt::step: row " + std::to_string(r) + " would exceed the " +
                                  std::to_string(cache.capacity) + "-position cache");
    prefill = prefill && cache.lengths[r] == 0;
  }
  check_shape(prefill || len == 1, "Gpt::step: several tokens per row only into an empty cache");
  cache.new_lengths = lengths;
  Context ctx;  // inference
  Inference inference{&cache, &packed};
  Var h = run(ids.to(device()), position_ids(cache.lengths, len, device()), ctx, &inference);
  // Each row's last real token: [B * L, d] rows r * L + lengths[r] - 1.
  std::vector<int32_t> last;
  for (int64_t r = 0; r < batch; ++r) last.push_back(int32_t(r * len + lengths[size_t(r)] - 1));
  Tensor index = Tensor::from_vector(last, {batch}).to(device());
  Tensor rows = ops::gather_rows(h.value().reshape({batch * len, config_.d_model}), index);
  for (size_t r = 0; r < lengths.size(); ++r) cache.lengths[r] += lengths[r];
  return packed.lm_head(Var(rows)).value();  // [B, V]
}

}  // namespace qkv::nn
