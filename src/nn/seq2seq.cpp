#include "nn/seq2seq.h"

#include <cmath>
#include <stdexcept>

#include "io/atomic_file.h"

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

namespace {
void bind(Options& o, Seq2SeqConfig& c, std::string& model_type) {
  o.add("model-type", model_type, "seq2seq");
  o.add("vocab-size", c.vocab_size, "subword vocabulary size");
  o.add("d-model", c.d_model, "model width");
  o.add("heads", c.heads, "attention heads");
  o.add("d-ff", c.d_ff, "feed-forward width");
  o.add("encoder-layers", c.encoder_layers, "encoder layers");
  o.add("decoder-layers", c.decoder_layers, "decoder layers");
  o.add("activation", c.activation, "feed-forward activation");
  o.add("pre-norm", c.pre_norm, "LayerNorm before each sub-layer");
  o.add("tie-embeddings", c.tie_embeddings, "output projection = embeddings");
  o.add("dropout", c.dropout, "dropout used in training");
  o.add("max-positions", c.max_positions, "longest sequence");
  o.add("pad-id", c.pad_id, "padding id");
  o.add("unk-id", c.unk_id, "unknown-subword id");
  o.add("bos-id", c.bos_id, "begin-of-sentence id");
  o.add("eos-id", c.eos_id, "end-of-sentence id");
  o.add("scale-embeddings", c.scale_embeddings, "embeddings x sqrt(d-model)");
  o.add("position-layout", c.position_layout, "sinusoids interleaved or halves (Marian)");
  o.add("final-norm", c.final_norm, "LayerNorm after each post-norm stack");
  o.add("source-eos", c.source_eos, "sources end with <eos>");
}
}  // namespace

void Seq2SeqConfig::save(const std::string& path) const {
  Seq2SeqConfig copy = *this;
  std::string type = "seq2seq";
  Options o;
  bind(o, copy, type);
  write_file_atomic(path, o.to_yaml());
}

Seq2SeqConfig Seq2SeqConfig::load(const std::string& path) {
  Seq2SeqConfig c;
  std::string type;
  Options o;
  bind(o, c, type);
  o.load_yaml(path);
  if (type != "seq2seq")
    throw std::runtime_error(path + ": model-type is '" + type + "', expected seq2seq");
  try {
    c.check(path);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(e.what());
  }
  return c;
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
  for (int64_t i = 0; i < config.encoder_layers; ++i) encoder_.emplace_back(shape);
  for (int64_t i = 0; i < config.decoder_layers; ++i) decoder_.emplace_back(shape);
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
