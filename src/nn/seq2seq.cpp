#include "nn/seq2seq.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace qkv::nn {

Seq2SeqConfig Seq2SeqConfig::preset(const std::string& name) {
  Seq2SeqConfig c;
  if (name == "tiny") {
    c.d_model = 256, c.heads = 4, c.d_ff = 1024, c.encoder_layers = 3, c.decoder_layers = 3;
  } else if (name == "small") {
    c.d_model = 512, c.heads = 8, c.d_ff = 2048, c.encoder_layers = 3, c.decoder_layers = 3;
  } else if (name == "base") {
    c.d_model = 512, c.heads = 8, c.d_ff = 2048, c.encoder_layers = 6, c.decoder_layers = 6;
  } else {
    throw std::invalid_argument("unknown preset '" + name + "' (expected tiny, small or base)");
  }
  return c;
}

void Seq2SeqConfig::override_shape(const Seq2SeqConfig& given) {
  if (given.d_model) d_model = given.d_model;
  if (given.heads) heads = given.heads;
  if (given.d_ff) d_ff = given.d_ff;
  if (given.encoder_layers) encoder_layers = given.encoder_layers;
  if (given.decoder_layers) decoder_layers = given.decoder_layers;
  if (!given.activation.empty()) activation = given.activation;
  vocab_size = given.vocab_size;
  pre_norm = given.pre_norm;
  tie_embeddings = given.tie_embeddings;
  max_positions = given.max_positions;
  moe = given.moe;
}

void Seq2SeqConfig::bind_shape(Options& o) {
  // The help texts are what `qkv train --help` shows.
  o.add("vocab-size", vocab_size, "SentencePiece vocabulary size when one is trained");
  o.add("d-model", d_model, "model width (0: the preset's)");
  o.add("heads", heads, "attention heads (0: the preset's)");
  o.add("d-ff", d_ff, "feed-forward width (0: the preset's)");
  o.add("encoder-layers", encoder_layers, "encoder layers (0: the preset's)");
  o.add("decoder-layers", decoder_layers, "decoder layers (0: the preset's)");
  o.add("activation", activation, "feed-forward activation: relu, gelu or gelu_tanh");
  o.add("pre-norm", pre_norm, "LayerNorm before each sub-layer instead of after");
  o.add("tie-embeddings", tie_embeddings, "output projection shares the embedding matrix");
  o.add("max-positions", max_positions, "longest sequence in subwords the model accepts");
  moe.bind(o);
}

void Seq2SeqConfig::bind(Options& o) {
  bind_shape(o);
  o.add("dropout", dropout, "dropout used in training");
  o.add("pad-id", pad_id, "padding id");
  o.add("unk-id", unk_id, "unknown-subword id");
  o.add("bos-id", bos_id, "begin-of-sentence id");
  o.add("eos-id", eos_id, "end-of-sentence id");
  o.add("scale-embeddings", scale_embeddings, "embeddings x sqrt(d-model)");
  o.add("position-layout", position_layout, "sinusoids interleaved or halves (Marian)");
  o.add("final-norm", final_norm, "LayerNorm after each post-norm stack");
  o.add("source-eos", source_eos, "sources end with <eos>");
}

void Seq2SeqConfig::check(const std::string& where) const {
  auto fail = [&](const std::string& what) { throw std::invalid_argument(where + ": " + what); };
  if (vocab_size <= 4 || d_model <= 0 || heads <= 0 || d_model % heads != 0 || d_ff <= 0 ||
      encoder_layers < 0 || decoder_layers < 1 || max_positions < 2)
    fail("inconsistent model shape");
  for (int32_t id : {pad_id, unk_id, bos_id, eos_id})
    if (id < 0 || id >= vocab_size)
      fail("special id " + std::to_string(id) + " is outside the vocabulary");
  if (eos_id == bos_id || eos_id == pad_id) fail("eos-id must differ from bos-id and pad-id");
  try {
    ops::activation_from_name(activation);
    position_layout_from_name(position_layout);
  } catch (const std::invalid_argument& e) {
    fail(e.what());
  }
  moe.check(where, std::max(encoder_layers, decoder_layers));
}

LayerShape Seq2SeqConfig::layer_shape() const {
  return {d_model, heads, d_ff, ops::activation_from_name(activation), pre_norm, 1e-5f};
}

Seq2Seq::Seq2Seq(const Seq2SeqConfig& config)
    : config_(config),
      shared_(make_param({config.vocab_size, config.d_model})),
      final_logits_bias_(make_param({config.vocab_size})),
      positions_(sinusoidal_positions(config.max_positions, config.d_model,
                                      position_layout_from_name(config.position_layout))),
      encoder_norm_(config.d_model),
      decoder_norm_(config.d_model) {
  if (!config.tie_embeddings) lm_head_ = Linear(config.d_model, config.vocab_size, false);
  LayerShape shape = config.layer_shape();
  for (int64_t i = 0; i < config.encoder_layers; ++i)
    encoder_.emplace_back(shape, layer_moe(config.moe, i));
  for (int64_t i = 0; i < config.decoder_layers; ++i)
    decoder_.emplace_back(shape, layer_moe(config.moe, i));
}

void Seq2Seq::init(Rng& rng) {
  init_normal(shared_.mutable_value(), rng, 1.f / std::sqrt(float(config_.d_model)));
  if (!config_.tie_embeddings) lm_head_.init(rng);
  for (auto& l : encoder_) l.init(rng);
  for (auto& l : decoder_) l.init(rng);
}

ParamList Seq2Seq::params() const {
  ParamList out;
  out.emplace_back("model.shared.weight", shared_);
  for (size_t i = 0; i < encoder_.size(); ++i)
    encoder_[i].params("model.encoder.layers." + std::to_string(i), out);
  for (size_t i = 0; i < decoder_.size(); ++i)
    decoder_[i].params("model.decoder.layers." + std::to_string(i), out);
  if (config_.stack_norms()) {
    encoder_norm_.params("model.encoder.layer_norm", out);
    decoder_norm_.params("model.decoder.layer_norm", out);
  }
  if (!config_.tie_embeddings) lm_head_.params("lm_head", out);
  out.emplace_back("final_logits_bias", final_logits_bias_);
  return out;
}

LinearList Seq2Seq::linears() {
  LinearList out;
  for (size_t i = 0; i < encoder_.size(); ++i)
    encoder_[i].linears("model.encoder.layers." + std::to_string(i), out);
  for (size_t i = 0; i < decoder_.size(); ++i)
    decoder_[i].linears("model.decoder.layers." + std::to_string(i), out);
  return out;
}

void Seq2Seq::to(Device device) {
  move_params(params(), device);
  positions_ = positions_.to(device);
}

Var Seq2Seq::embed(const Tensor& ids, int64_t offset, const Context& ctx) const {
  int64_t len = ids.size(1);
  if (offset + len > config_.max_positions)
    throw std::invalid_argument("a sequence of " + std::to_string(offset + len) +
                                " tokens is longer than the model allows (max-positions " +
                                std::to_string(config_.max_positions) + ")");
  float scale = config_.scale_embeddings ? std::sqrt(float(config_.d_model)) : 1.f;
  Var x = embedding(ids, shared_, scale);                // [B, L, d]
  Var pos(positions_.slice_rows(offset, offset + len));  // [L, d]
  return ctx.drop(add(x, pos));
}

Var Seq2Seq::encode(const Tensor& src, const Tensor& src_lengths, const Context& ctx) const {
  ops::AttentionMask mask{false, src_lengths};
  Var x = embed(src, 0, ctx);
  for (const auto& layer : encoder_) x = layer(x, mask, ctx);
  return config_.stack_norms() ? encoder_norm_(x) : x;
}

Var Seq2Seq::decode(const Tensor& tgt_in, const Var& memory, const Tensor& src_lengths,
                    const Context& ctx) const {
  ops::AttentionMask self_mask{true, Tensor()}, memory_mask{false, src_lengths};
  Var x = embed(tgt_in, 0, ctx);
  for (const auto& layer : decoder_) x = layer(x, memory, self_mask, memory_mask, ctx);
  return config_.stack_norms() ? decoder_norm_(x) : x;
}

Var Seq2Seq::logits(const Var& hidden) const {
  const Var& w = config_.tie_embeddings ? shared_ : lm_head_.weight;
  return linear(hidden, w, final_logits_bias_);
}

Var Seq2Seq::forward(const Tensor& src, const Tensor& src_lengths, const Tensor& tgt_in,
                     const Context& ctx) const {
  return logits(decode(tgt_in, encode(src, src_lengths, ctx), src_lengths, ctx));
}

}  // namespace qkv::nn
