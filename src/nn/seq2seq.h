// The encoder-decoder Transformer of "Attention Is All You Need": shared source/target
// vocabulary, embeddings scaled by sqrt(d_model) plus sinusoidal positions, N encoder and N
// decoder layers, and an output projection tied to the embeddings (optional).
// Parameter names follow Hugging Face's MarianMTModel; the options below also cover what
// MarianMTModel and torch.nn.Transformer checkpoints need (see src/convert/).
#pragma once
#include <string>
#include <vector>

#include "config/options.h"
#include "nn/transformer.h"

namespace qkv::nn {

struct Seq2SeqConfig {
  int64_t vocab_size = 8000;
  int64_t d_model = 256, heads = 4, d_ff = 1024;
  int64_t encoder_layers = 3, decoder_layers = 3;
  std::string activation = "relu";
  bool pre_norm = false;
  bool tie_embeddings = true;  // output projection = embedding matrix
  float dropout = 0.1f;
  int64_t max_positions = 1024;  // longest sequence the model accepts
  // bos_id starts the decoder (Marian uses its pad id there).
  int32_t pad_id = 0, unk_id = 1, bos_id = 2, eos_id = 3;
  bool scale_embeddings = true;                 // embeddings x sqrt(d_model)
  std::string position_layout = "interleaved";  // or "halves" (see sinusoidal_positions)
  bool final_norm = false;  // a LayerNorm after each post-norm stack too (torch.nn.Transformer)
  bool source_eos = false;  // every source sentence ends with <eos> (Marian)
  // Mixture-of-Experts layers, counted from 0 within each stack (nn/transformer.h).
  MoeOptions moe;

  // The fields a user chooses when training (vocab-size, d-model, heads, d-ff,
  // encoder-layers, decoder-layers, activation, pre-norm, tie-embeddings, max-positions and
  // MoeOptions' moe-*) under
  // the kebab-case keys that `qkv train`'s options, a training YAML and a model directory's
  // config.yaml share.
  void bind_shape(Options& options);
  // Every field: bind_shape's, then those a trained or converted model fixes (dropout, the
  // special ids, embedding scale, position layout, ...). The keys of config.yaml (see
  // model_dir/seq2seq_dir.h, which adds model-type).
  void bind(Options& options);

  // "tiny", "small" or "base" (unknown names are an error listing these).
  static Seq2SeqConfig preset(const std::string& name);
  // Takes `given`'s bind_shape fields, except that d-model, heads, d-ff, encoder-layers and
  // decoder-layers given as 0 and activation given as "" keep this config's (a preset's; no
  // preset has experts).
  void override_shape(const Seq2SeqConfig& given);
  LayerShape layer_shape() const;
  // Whether each stack ends with a LayerNorm (always for pre-norm).
  bool stack_norms() const { return pre_norm || final_norm; }
  // Throws std::invalid_argument (prefixed with `where`) for an inconsistent field.
  void check(const std::string& where) const;
};

class Seq2Seq {
 public:
  explicit Seq2Seq(const Seq2SeqConfig& config);
  const Seq2SeqConfig& config() const { return config_; }
  // Random initialisation for training.
  void init(Rng& rng);
  ParamList params() const;
  // The hidden linear layers (not lm_head), for LoRA.
  LinearList linears();
  // Moves the parameters and the position table to `device`; inputs must live there too.
  void to(Device device);
  Device device() const { return shared_.value().device(); }

  // ids i32 [B, L] starting at position `offset` -> scaled embeddings + positions [B, L, d].
  Var embed(const Tensor& ids, int64_t offset, const Context& ctx) const;
  // src i32 [B, S], src_lengths i32 [B] -> memory [B, S, d].
  Var encode(const Tensor& src, const Tensor& src_lengths, const Context& ctx) const;
  // Teacher forcing: tgt_in i32 [B, T] (starting with <bos>) -> hidden [B, T, d].
  Var decode(const Tensor& tgt_in, const Var& memory, const Tensor& src_lengths,
             const Context& ctx) const;
  // hidden [..., d] -> logits [..., V].
  Var logits(const Var& hidden) const;
  Var forward(const Tensor& src, const Tensor& src_lengths, const Tensor& tgt_in,
              const Context& ctx) const;

  // logits = hidden @ output_weight^T + output_bias: weight [V, d], bias [V].
  const Var& output_weight() const { return config_.tie_embeddings ? shared_ : lm_head_.weight; }
  const Var& output_bias() const { return final_logits_bias_; }
  const std::vector<DecoderLayer>& decoder_layers() const { return decoder_; }
  const LayerNorm& decoder_final_norm() const { return decoder_norm_; }

 private:
  Seq2SeqConfig config_;
  Var shared_;             // [V, d]
  Linear lm_head_;         // untied output projection (weight [V, d]) when !tie_embeddings
  Var final_logits_bias_;  // [V]
  Tensor positions_;       // [max_positions, d], not trained
  std::vector<EncoderLayer> encoder_;
  std::vector<DecoderLayer> decoder_;
  LayerNorm encoder_norm_, decoder_norm_;  // pre-norm only
};

}  // namespace qkv::nn
