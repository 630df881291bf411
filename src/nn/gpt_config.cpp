// GptConfig: presets, options and checks (the model is in gpt.cpp).
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "nn/gpt.h"

namespace qkv::nn {

int64_t GptConfig::ff_width() const {
  if (d_ff > 0) return d_ff;
  if (!swiglu()) return 4 * d_model;
  int64_t width = (8 * d_model + 2) / 3;  // Llama: 2/3 of 4 d, a multiple of 64 above
  return (width + 63) / 64 * 64;
}

ops::RopeFrequencies GptConfig::rope_frequencies() const {
  ops::RopeFrequencies f{.theta = rope_theta};
  if (rope_scaling == "none") return f;
  f.scaling = rope_scaling == "linear" ? ops::RopeScaling::linear : ops::RopeScaling::llama3;
  f.factor = rope_scaling_factor;
  f.low_freq_factor = rope_low_freq_factor, f.high_freq_factor = rope_high_freq_factor;
  f.original_positions = double(rope_original_context);
  return f;
}

GptConfig GptConfig::preset(const std::string& name) {
  GptConfig c;
  if (name == "gpt-nano") {  // nanoGPT's CPU "baby GPT"
    c.context_length = 64, c.layers = 4, c.heads = 4, c.d_model = 128;
  } else if (name == "gpt-mini") {  // nanoGPT's shakespeare_char model
    c.context_length = 256, c.layers = 6, c.heads = 6, c.d_model = 384, c.dropout = 0.2f;
  } else if (name == "gpt2") {  // GPT-2 small, 124M parameters with its 50257 tokens
    c.context_length = 1024, c.layers = 12, c.heads = 12, c.d_model = 768;
    c.mlp = "gelu_tanh";
  } else if (name == "llama-tiny") {
    c.context_length = 256, c.layers = 4, c.heads = 8, c.kv_heads = 2, c.d_model = 256;
    c.positions = "rope", c.norm = "rmsnorm", c.mlp = "swiglu", c.bias = false;
    c.tie_embeddings = false;
  } else {
    throw std::invalid_argument("unknown GPT preset '" + name +
                                "' (expected gpt-nano, gpt-mini, gpt2 or llama-tiny)");
  }
  return c;
}

void GptConfig::bind_shape(Options& o) {
  o.add("context-length", context_length, "longest sequence in tokens the model sees");
  o.add("d-model", d_model, "model width");
  o.add("layers", layers, "decoder blocks");
  o.add("heads", heads, "query heads");
  o.add("kv-heads", kv_heads, "key/value heads (0: heads; 1: multi-query; else grouped-query)");
  o.add("d-ff", d_ff, "MLP width (0: 4 d-model, or Llama's 8/3 d-model for swiglu)");
  o.add("positions", positions, "position encoding: learned or rope");
  o.add("rope-theta", rope_theta, "RoPE base frequency");
  o.add("norm", norm, "layernorm or rmsnorm");
  o.add("norm-eps", norm_eps, "epsilon of the norms");
  o.add("mlp", mlp, "MLP: gelu, gelu_tanh or swiglu");
  moe.bind(o);
}

void GptConfig::bind(Options& o) {
  bind_shape(o);
  o.add("rope-scaling", rope_scaling, "RoPE scaling: none, linear or llama3");
  o.add("rope-scaling-factor", rope_scaling_factor, "linear and llama3: the scaling factor");
  o.add("rope-low-freq-factor", rope_low_freq_factor, "llama3: low_freq_factor");
  o.add("rope-high-freq-factor", rope_high_freq_factor, "llama3: high_freq_factor");
  o.add("rope-original-context", rope_original_context, "llama3: original_max_position_embeddings");
  o.add("bias", bias, "biases in the attention and MLP projections");
  o.add("tie-embeddings", tie_embeddings, "output projection shares the embedding matrix");
  o.add("vocab-size", vocab_size, "tokens in the vocabulary");
  o.add("dropout", dropout, "dropout used in training");
  o.add("bos-id", bos_id, "begin-of-sequence id (-1: none)");
  o.add("eos-id", eos_id, "end-of-text id (-1: none)");
  o.add("stop-ids", stop_ids, "further ids that end generation besides eos-id");
}

bool GptConfig::ends_generation(int32_t id) const {
  return id == eos_id || std::find(stop_ids.begin(), stop_ids.end(), id) != stop_ids.end();
}

void GptConfig::check(const std::string& where) const {
  auto fail = [&](const std::string& what) { throw std::invalid_argument(where + ": " + what); };
  auto positive = [&](const char* name, int64_t value) {
    if (value <= 0) fail(std::string(name) + " must be positive, not " + std::to_string(value));
  };
  positive("vocab-size", vocab_size);
  positive("context-length", context_length);
  positive("d-model", d_model);
  positive("layers", layers);
  positive("heads", heads);
  if (d_model % heads != 0)
    fail("d-model " + std::to_string(d_model) + " is not a multiple of heads " +
         std::to_string(heads));
  if (kv_heads < 0 || heads % kv_head_count() != 0)
    fail("kv-heads " + std::to_string(kv_heads) + " must divide heads " + std::to_string(heads));
  if (d_ff < 0) fail("d-ff must not be negative, not " + std::to_string(d_ff));
  if (positions != "learned" && positions != "rope")
    fail("positions must be learned or rope, not '" + positions + "'");
  if (rope() && (head_dim() % 2 != 0 || !(rope_theta > 0)))
    fail("rope needs an even head size and rope-theta > 0");
  if (rope_scaling != "none" && rope_scaling != "linear" && rope_scaling != "llama3")
    fail("rope-scaling must be none, linear or llama3, not '" + rope_scaling + "'");
  if (rope_scaling != "none") {
    if (!rope()) fail("rope-scaling " + rope_scaling + " needs positions rope");
    if (!(rope_scaling_factor > 0) || !std::isfinite(rope_scaling_factor))
      fail("rope-scaling-factor must be positive");
  }
  if (rope_scaling == "llama3" &&
      !(rope_low_freq_factor > 0 && rope_high_freq_factor > rope_low_freq_factor &&
        std::isfinite(rope_high_freq_factor) && rope_original_context > 0))
    fail(
        "llama3 rope scaling needs 0 < rope-low-freq-factor < rope-high-freq-factor and a "
        "positive rope-original-context");
  if (norm != "layernorm" && norm != "rmsnorm")
    fail("norm must be layernorm or rmsnorm, not '" + norm + "'");
  if (!(norm_eps > 0)) fail("norm-eps must be positive");
  if (mlp != "gelu" && mlp != "gelu_tanh" && mlp != "swiglu")
    fail("mlp must be gelu, gelu_tanh or swiglu, not '" + mlp + "'");
  if (!(dropout >= 0 && dropout < 1)) fail("dropout must be in [0, 1)");
  for (auto [name, id] : {std::pair{"bos-id", bos_id}, {"eos-id", eos_id}})
    if (id < -1 || id >= vocab_size)
      fail(std::string(name) + " " + std::to_string(id) + " is outside the vocabulary");
  for (int32_t id : stop_ids)
    if (id < 0 || id >= vocab_size)
      fail("stop-ids: " + std::to_string(id) + " is outside the vocabulary");
  moe.check(where, layers);
}

}  // namespace qkv::nn
