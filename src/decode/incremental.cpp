#include "decode/incremental.h"

#include <cmath>

namespace qkv::decode {

IncrementalDecoder::IncrementalDecoder(const nn::Seq2Seq& model, const Var& memory,
                                       const Tensor& src_lengths, int64_t capacity)
    : model_(model), src_lengths_(src_lengths), capacity_(capacity) {
  const auto& c = model.config();
  int64_t n = memory.shape()[0], dh = c.d_model / c.heads;
  for (const auto& layer : model.decoder_layers()) {
    LayerCache cache;
    // Zeros, not garbage: masked positions must not turn into NaN when weighted by 0.
    cache.self_k = Tensor::zeros({n, c.heads, capacity, dh});
    cache.self_v = Tensor::zeros({n, c.heads, capacity, dh});
    cache.mem_k = layer.encoder_attn.split_heads(layer.encoder_attn.k_proj(memory)).value();
    cache.mem_v = layer.encoder_attn.split_heads(layer.encoder_attn.v_proj(memory)).value();
    layers_.push_back(std::move(cache));
  }
  self_lengths_ = Tensor::empty({n}, DType::i32);
}

Var IncrementalDecoder::self_attention(const nn::MultiHeadAttention& attn, const Var& x,
                                       LayerCache& cache) {
  int64_t n = x.shape()[0], dh = attn.d_model / attn.heads;
  // With one position, [N, 1, H, Dh] and [N, H, 1, Dh] share a memory layout: no permute.
  Shape heads{n, attn.heads, 1, dh};
  Var q = reshape(attn.q_proj(x), heads);
  ops::kv_cache_write(cache.self_k, attn.k_proj(x).value().reshape(heads), pos_);
  ops::kv_cache_write(cache.self_v, attn.v_proj(x).value().reshape(heads), pos_);
  ops::AttentionMask mask{false, self_lengths_};
  Var o = attention(q, Var(cache.self_k), Var(cache.self_v), mask, 1.f / std::sqrt(float(dh)));
  return attn.out_proj(reshape(o, {n, 1, attn.d_model}));
}

Var IncrementalDecoder::cross_attention(const nn::MultiHeadAttention& attn, const Var& x,
                                        const LayerCache& cache) {
  int64_t n = x.shape()[0], dh = attn.d_model / attn.heads;
  Var q = reshape(attn.q_proj(x), {n, attn.heads, 1, dh});
  ops::AttentionMask mask{false, src_lengths_};
  Var o = attention(q, Var(cache.mem_k), Var(cache.mem_v), mask, 1.f / std::sqrt(float(dh)));
  return attn.out_proj(reshape(o, {n, 1, attn.d_model}));
}

Tensor IncrementalDecoder::step(const Tensor& tokens) {
  check_shape(pos_ < capacity_,
              "IncrementalDecoder: more steps than the capacity " + std::to_string(capacity_));
  int64_t n = rows();
  self_lengths_.fill(float(pos_ + 1));
  Var x = model_.embed(tokens.reshape({n, 1}), pos_, ctx_);  // [N, 1, d]
  bool pre = model_.config().pre_norm;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const nn::DecoderLayer& layer = model_.decoder_layers()[i];
    LayerCache& cache = layers_[i];
    x = nn::residual(x, layer.self_attn_layer_norm, pre, ctx_,
                     [&](const Var& y) { return self_attention(layer.self_attn, y, cache); });
    x = nn::residual(x, layer.encoder_attn_layer_norm, pre, ctx_,
                     [&](const Var& y) { return cross_attention(layer.encoder_attn, y, cache); });
    x = nn::residual(x, layer.final_layer_norm, pre, ctx_,
                     [&](const Var& y) { return layer.ffn(y, ctx_); });
  }
  if (model_.config().stack_norms()) x = model_.decoder_final_norm()(x);
  ++pos_;
  return model_.logits(x).value().reshape({n, model_.config().vocab_size});
}

void IncrementalDecoder::reorder(const Tensor& index) {
  for (auto& cache : layers_)
    for (Tensor* t : {&cache.self_k, &cache.self_v, &cache.mem_k, &cache.mem_v})
      *t = ops::gather_rows(*t, index);
  src_lengths_ = ops::gather_rows(src_lengths_, index);
  self_lengths_ = Tensor::empty({index.size(0)}, DType::i32);
}

}  // namespace qkv::decode
