// Decoder-only language models: GPT-2 (Radford et al. 2019) and Llama (Touvron et al. 2023) as
// one family with options. Tokens -> embeddings (+ learned positions) -> N pre-norm blocks of
// causal self-attention and an MLP -> a final norm -> logits over the vocabulary.
//   x = x + drop(o_proj(attention(norm1(x))))        query heads `heads`, key/value heads
//   x = x + drop(mlp(norm2(x)))                       `kv-heads` (grouped-query attention)
// positions: learned (GPT-2: a table added to the embeddings) or rope (Llama: q and k rotated
// in the rotate-half layout, frequencies theta^(-2i/Dh)). norm: layernorm or rmsnorm. mlp: gelu
// or gelu_tanh (down(act(up(x)))), or swiglu (down(silu(gate(x)) * up(x))).
//
// Parameter names are Llama's (LlamaForCausalLM) for every option, so that LoRA targets
// (q_proj, v_proj, ...) mean the same on every model:
//   model.embed_tokens.weight [V, d]          model.embed_positions.weight [context, d] (learned)
//   model.layers.N.input_layernorm.weight [d] (.bias with layernorm)
//   model.layers.N.self_attn.{q,k,v,o}_proj.weight (.bias when bias)   q/o [d, d], k/v [kv*Dh, d]
//   model.layers.N.post_attention_layernorm.weight
//   model.layers.N.mlp.{gate_proj (swiglu),up_proj,down_proj}.weight
//   model.norm.weight                         lm_head.weight [V, d] (untied only)
// An MoE block (moe-experts > 0, nn/moe.h) has Mixtral's MLP instead of mlp.*:
//   model.layers.N.block_sparse_moe.gate.weight [E, d]
//   model.layers.N.block_sparse_moe.experts.M.{w1,w3,w2}.weight   (w1 = gate, w3 = up (swiglu
//   only), w2 = down)
// GPT-2 checkpoints (transformer.h.N.attn.c_attn, Conv1D [in, out]) are renamed and split by
// src/convert.
#pragma once
#include <string>
#include <vector>

#include "config/options.h"
#include "nn/layers.h"
#include "nn/moe.h"
#include "nn/packed_linear.h"

namespace qkv::nn {

struct GptConfig {
  int64_t vocab_size = 0;  // the tokenizer's
  int64_t context_length = 64;
  int64_t d_model = 128, layers = 4, heads = 4;
  int64_t kv_heads = 0;  // 0: heads (multi-head); 1: multi-query; else grouped-query
  int64_t d_ff = 0;      // 0: 4 d_model, or for swiglu 8/3 d_model up to a multiple of 64
  std::string positions = "learned";  // or "rope"
  double rope_theta = 10000;
  // A converted checkpoint's RoPE scaling (ops/rope_frequencies.h): none, linear or llama3,
  // its factor, and llama3's frequency factors and original context length.
  std::string rope_scaling = "none";
  double rope_scaling_factor = 1, rope_low_freq_factor = 1, rope_high_freq_factor = 4;
  int64_t rope_original_context = 8192;
  std::string norm = "layernorm";  // or "rmsnorm"
  float norm_eps = 1e-5f;
  std::string mlp = "gelu";  // gelu, gelu_tanh or swiglu
  bool bias = true;          // biases of the attention and MLP projections
  bool tie_embeddings = true;
  float dropout = 0.f;
  // The tokenizer's specials (-1: none). bos starts every sequence when the tokenizer adds one;
  // eos ends generation.
  int32_t bos_id = -1, eos_id = -1;
  // Further ids that end generation, as a Hugging Face eos_token_id list names them (Llama 3.1
  // Instruct: <|end_of_text|> and <|eom_id|> beside the tokenizer's <|eot_id|>).
  std::vector<int32_t> stop_ids;
  // Mixture-of-Experts MLPs (Mixtral's, with the family's MLP as experts) in the layers it
  // selects.
  MoeOptions moe;

  int64_t head_dim() const { return d_model / heads; }
  int64_t kv_head_count() const { return kv_heads > 0 ? kv_heads : heads; }
  int64_t ff_width() const;
  bool rope() const { return positions == "rope"; }
  ops::RopeFrequencies rope_frequencies() const;
  bool rms_norm() const { return norm == "rmsnorm"; }
  bool swiglu() const { return mlp == "swiglu"; }
  // Whether sampling `id` ends a generated sequence: eos or one of stop_ids.
  bool ends_generation(int32_t id) const;

  // The fields a user picks when training, under the kebab-case keys a training YAML and
  // config.yaml share (context-length, d-model, layers, heads, kv-heads, d-ff, positions,
  // rope-theta, norm, norm-eps, mlp, and MoeOptions' moe-*).
  void bind_shape(Options& options);
  // Every field: bind_shape's, then bias, tie-embeddings, vocab-size, dropout, bos-id, eos-id,
  // stop-ids.
  void bind(Options& options);
  // "gpt-nano", "gpt-mini", "gpt2" or "llama-tiny"; an unknown name is an error listing them.
  static GptConfig preset(const std::string& name);
  // Throws std::invalid_argument (prefixed with `where`) naming the first bad field.
  void check(const std::string& where) const;
};

// LayerNorm (weight and bias) or RMSNorm (weight only).
struct Norm {
  Var weight, bias;
  float eps = 1e-5f;
  bool rms = false;
  Norm() = default;
  Norm(int64_t d, bool rms, float eps);
  Var operator()(const Var& x) const;
  void params(const std::string& prefix, ParamList& out) const;
};

struct GptBlock {
  Norm input_layernorm, post_attention_layernorm;
  Linear q_proj, k_proj, v_proj, o_proj;
  Linear gate_proj, up_proj, down_proj;  // gate_proj: swiglu only; none in an MoE block
  MoeFeedForward moe;                    // an MoE block's MLP (block_sparse_moe), else empty
  bool is_moe() const { return !moe.experts.empty(); }
  void params(const std::string& prefix, ParamList& out) const;
  void linears(const std::string& prefix, LinearList& out);
};

// Keys and values of the positions seen so far, per layer [B, kv-heads, capacity, Dh], and
// each row's length (rows may hold prompts of different lengths).
struct KvCache {
  std::vector<Tensor> k, v;
  std::vector<int64_t> lengths;      // per row
  std::vector<int64_t> new_lengths;  // during a step: each row's real new tokens
  int64_t capacity = 0;
};

// A model's linear weights packed once for inference steps (Gpt::pack): the query, key and value
// projections side by side, and swiglu's gate and up. Valid while the weights do not change.
struct PackedGpt {
  struct Layer {
    PackedLinear qkv, o_proj, gate_up, down_proj;  // gate_up: up alone without swiglu
    PackedMoe moe;                                 // MoE blocks instead of gate_up, down_proj
  };
  std::vector<Layer> layers;
  PackedLinear lm_head;
};

// Keeps the cache rows `rows` (strictly increasing), in that order.
void keep_cache_rows(KvCache& cache, const std::vector<int32_t>& rows);
// Copies row `from` of `source` (its keys, values and length) into row `to` of `cache`; both
// have the same layers and capacity.
void copy_cache_row(const KvCache& source, int64_t from, KvCache& cache, int64_t to);

class Gpt {
 public:
  explicit Gpt(const GptConfig& config);
  const GptConfig& config() const { return config_; }
  // GPT-2's initialisation: weights N(0, 0.02), the projections into the residual stream
  // (o_proj, down_proj) N(0, 0.02 / sqrt(2 * layers)), biases 0, norms 1.
  void init(Rng& rng);
  ParamList params() const;
  // The hidden linear layers (not lm_head), for LoRA.
  LinearList linears();
  void to(Device device);
  Device device() const { return embed_tokens_.value().device(); }

  // ids i32 [B, L] at positions 0..L-1 (L <= context-length) -> hidden [B, L, d] after the
  // final norm.
  Var hidden(const Tensor& ids, const Context& ctx) const;
  // hidden [..., d] -> logits [..., V].
  Var logits(const Var& hidden) const;
  Var forward(const Tensor& ids, const Context& ctx) const { return logits(hidden(ids, ctx)); }

  // An empty cache for `rows` sequences of up to `capacity` positions on the model's device.
  KvCache new_cache(int64_t rows, int64_t capacity) const;
  // The weights packed for products in `type`, lm_head included (as the translation decoder's
  // output projection, decode::PackedDecoder).
  PackedGpt pack(ops::ComputeType type = ops::ComputeType::f32) const;
  // Inference with a cache and this model's packed weights: ids i32 [B, L] continue each row r
  // at position cache.lengths[r]; only the first lengths[r] of them are real (each in [1, L]),
  // the rest padding. Several tokens per row only into an empty cache (a prefill), else one.
  // Returns the logits [B, V] of each row's last real token; the cache grows by them.
  Tensor step(const Tensor& ids, const std::vector<int64_t>& lengths, KvCache& cache,
              const PackedGpt& packed) const;

  const Var& output_weight() const {
    return config_.tie_embeddings ? embed_tokens_ : lm_head_.weight;
  }

 private:
  // What a step adds to a forward pass: the cache and the packed weights (null in training).
  struct Inference {
    KvCache* cache;
    const PackedGpt* packed;
  };
  // x [B, L, d] -> [B, L, d]; positions i32 [B, L] on the model's device.
  Var attention(size_t layer, const Var& x, const Tensor& positions, const Context& ctx,
                const Inference* inference) const;
  Var mlp(size_t layer, const Var& x, const Context& ctx, const Inference* inference) const;
  // ids i32 [B, L] at positions i32 [B, L] -> hidden [B, L, d] after the final norm.
  Var run(const Tensor& ids, const Tensor& positions, const Context& ctx,
          const Inference* inference) const;

  GptConfig config_;
  Var embed_tokens_, embed_positions_;
  std::vector<GptBlock> layers_;
  Norm norm_;
  Linear lm_head_;
};

}  // namespace qkv::nn
