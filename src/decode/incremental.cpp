#include "decode/incremental.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

namespace qkv::decode {

IncrementalDecoder::IncrementalDecoder(const PackedDecoder& weights, const Var& memory,
                                       const Tensor& src_lengths, int64_t capacity, int64_t beam)
    : weights_(weights),
      model_(weights.model()),
      src_lengths_(src_lengths),
      capacity_(capacity),
      beam_(beam) {
  const auto& c = model_.config();
  int64_t n = memory.shape()[0] * beam, dh = c.d_model / c.heads;
  Device device = model_.device();
  for (const auto& layer : model_.decoder_layers()) {
    LayerCache cache;
    // Left unset: a position is read only after its step wrote it (attention stops at pos + 1).
    cache.self_k = Tensor::empty({n, c.heads, capacity, dh}, DType::f32, device);
    cache.self_v = Tensor::empty({n, c.heads, capacity, dh}, DType::f32, device);
    cache.mem_k = layer.encoder_attn.split_heads(layer.encoder_attn.k_proj(memory)).value();
    cache.mem_v = layer.encoder_attn.split_heads(layer.encoder_attn.v_proj(memory)).value();
    layers_.push_back(std::move(cache));
  }
  slots_ = Tensor::empty({n, capacity}, DType::i32);
}

Var IncrementalDecoder::self_attention(const PackedDecoder::Layer& w, const Var& x,
                                       LayerCache& cache) {
  int64_t n = x.shape()[0], h = cache.self_k.size(1), dh = cache.self_k.size(3);
  // With one position, [N, 1, H, Dh] and [N, H, 1, Dh] share a memory layout: no permute.
  Shape heads{n, h, 1, dh};
  std::vector<Tensor> qkv = ops::split(w.self_qkv(x).value(), {h * dh, h * dh, h * dh}, 2);
  // Row r writes position pos_ of cache row r (step() has pointed its slot there).
  for (auto [cache_t, part] : {std::pair{&cache.self_k, &qkv[1]}, {&cache.self_v, &qkv[2]}}) {
    Tensor written = cache_t->slice_rows(0, n);
    ops::kv_cache_write(written, part->reshape(heads), pos_);
  }
  Tensor o = ops::shared_cache_attention(qkv[0].reshape(heads), cache.self_k, cache.self_v, slots_,
                                         pos_ + 1, 1.f / std::sqrt(float(dh)));
  return w.self_out(Var(o.reshape({n, 1, h * dh})));
}

// The beam rows of a sentence are its queries: [B * beam, 1, d] -> [B, H, beam, Dh] against
// the sentence's keys [B, H, S, Dh], and back.
Var IncrementalDecoder::cross_attention(const PackedDecoder::Layer& w, const Var& x,
                                        const LayerCache& cache) {
  int64_t n = x.shape()[0], h = cache.mem_k.size(1), dh = cache.mem_k.size(3), b = n / beam_;
  Var q = reshape(w.cross_q(x), {b, beam_, h, dh});
  q = beam_ > 1 ? permute(q, {0, 2, 1, 3}) : reshape(q, {b, h, 1, dh});
  ops::AttentionMask mask{false, src_lengths_};
  Var o = attention(q, Var(cache.mem_k), Var(cache.mem_v), mask, 1.f / std::sqrt(float(dh)));
  if (beam_ > 1) o = permute(o, {0, 2, 1, 3});
  return w.cross_out(reshape(o, {n, 1, h * dh}));
}

Tensor IncrementalDecoder::step(const Tensor& tokens) {
  check_shape(pos_ < capacity_, [&] {
    return "IncrementalDecoder: more steps than the capacity " + std::to_string(capacity_);
  });
  int64_t n = rows();
  int32_t* slots = slots_.data<int32_t>();
  for (int64_t r = 0; r < n; ++r) slots[r * capacity_ + pos_] = int32_t(r);
  Var x = model_.embed(tokens.reshape({n, 1}).to(model_.device()), pos_, ctx_);  // [N, 1, d]
  bool pre = model_.config().pre_norm;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const nn::DecoderLayer& layer = model_.decoder_layers()[i];
    const PackedDecoder::Layer& w = weights_.layer(i);
    LayerCache& cache = layers_[i];
    x = nn::residual(x, layer.self_attn_layer_norm, pre, ctx_,
                     [&](const Var& y) { return self_attention(w, y, cache); });
    x = nn::residual(x, layer.encoder_attn_layer_norm, pre, ctx_,
                     [&](const Var& y) { return cross_attention(w, y, cache); });
    x = nn::residual(x, layer.final_layer_norm, pre, ctx_, [&](const Var& y) {
      return layer.is_moe() ? layer.moe(y, w.moe) : w.fc2(activation(layer.ffn.act, w.fc1(y)));
    });
  }
  if (model_.config().stack_norms()) x = model_.decoder_final_norm()(x);
  ++pos_;
  return weights_.output()(x).value().reshape({n, model_.config().vocab_size});
}

void IncrementalDecoder::reorder(const Tensor& index_host, const Tensor& sentences_host) {
  int64_t m = index_host.size(0), n = rows();
  const int32_t* idx = index_host.data<int32_t>();
  for (int64_t i = 0; i < m; ++i)
    check_shape(0 <= idx[i] && idx[i] < n, [&] {
      return "IncrementalDecoder::reorder: row " + std::to_string(idx[i]) + " outside [0, " +
             std::to_string(n) + ")";
    });
  // Row i continues row idx[i]: it takes over that row's history, written so far.
  Tensor slots = Tensor::empty({m, capacity_}, DType::i32);
  const int32_t* from = slots_.data<int32_t>();
  int32_t* to = slots.data<int32_t>();
  for (int64_t i = 0; i < m; ++i)
    std::copy(from + idx[i] * capacity_, from + idx[i] * capacity_ + pos_, to + i * capacity_);
  slots_ = slots;
  if (!sentences_host.defined()) return;
  Tensor sentences = sentences_host.to(model_.device());
  for (auto& cache : layers_) {
    cache.mem_k = ops::gather_rows(cache.mem_k, sentences);
    cache.mem_v = ops::gather_rows(cache.mem_v, sentences);
  }
  src_lengths_ = ops::gather_rows(src_lengths_, sentences);
}

}  // namespace qkv::decode
