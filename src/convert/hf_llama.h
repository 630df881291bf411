// Hugging Face LlamaForCausalLM folders <-> qkv gpt model directories (nn::GptConfig with RoPE,
// RMSNorm and a SwiGLU MLP). qkv's GPT parameters carry Llama's names, and Hugging Face stores
// Llama's query and key projections for the rotate-half RoPE that qkv computes, so the weights
// map one to one.
//
// config.json: hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
// num_key_value_heads (default: heads), head_dim (must be hidden_size / heads), rms_norm_eps,
// rope_theta (default 10000), rope_scaling or transformers 5's rope_parameters (rope types
// default, linear and llama3, as ops/rope_frequencies.h computes them; others are refused),
// max_position_embeddings (context-length), vocab_size, tie_word_embeddings (default false),
// attention_bias and mlp_bias (equal: qkv has one `bias`), hidden_act (silu), bos/eos_token_id.
// Every other key must be one that does not change the computation (the list is in
// hf_llama.cpp: torch_dtype, use_cache, generation defaults, ...); a sliding
// window shorter than max_position_embeddings, attention other than the standard one, and any
// key qkv does not know are refused by name.
// The tokenizer: tokenizer.model, or tokenizer.json (Llama 3; see hf_causal_lm.h).
#pragma once
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "convert/hf_weights.h"
#include "convert/json_file.h"
#include "nn/gpt.h"

namespace qkv::convert {

// Returns notes for the user; throws std::runtime_error naming the file and the key, tensor or
// file that is missing, unsupported or wrongly shaped.
std::vector<std::string> llama_from_hf(const std::string& hf_dir, const std::string& qkv_dir);
// which: the checkpoint of the qkv directory, "best" or "last". Throws std::runtime_error naming
// the option a LlamaForCausalLM cannot express (positions learned, norm layernorm, mlp gelu,
// moe-experts).
std::vector<std::string> llama_to_hf(const std::string& qkv_dir, const std::string& hf_dir,
                                     const std::string& which = "best");

// What the architectures built as Llama is (LlamaForCausalLM, MixtralForCausalLM) share.

// An architecture of the Llama family: its names, its config class's defaults for the keys
// every member reads, and what it reads and writes beyond them.
struct LlamaVariant {
  std::string architecture, model_type;  // "LlamaForCausalLM", "llama"
  int64_t d_ff = 11008, kv_heads = 0;    // intermediate_size, num_key_value_heads (0: heads)
  int64_t context_length = 2048;         // max_position_embeddings
  float norm_eps = 1e-6f;                // rms_norm_eps
  double rope_theta = 10000;
  std::set<std::string> read_keys;     // the variant's own keys, read by `read`
  std::set<std::string> ignored_keys;  // keys that do not change what the model computes
  // Reads the variant's own keys into `c` (before c is checked); throws naming the key.
  std::function<void(const JsonFile& cfg, nn::GptConfig& c)> read;
  // Adds the variant's own keys to config.json.
  std::function<void(const nn::GptConfig& c, nlohmann::ordered_json& config)> write;
};

// Throws std::runtime_error "<config.json>: "<key>": <value> is not supported (<why>)".
[[noreturn]] void refuse_config_key(const JsonFile& cfg, const std::string& key,
                                    const std::string& why);
// config.json as `variant` reads it, checked; throws std::runtime_error naming the key.
nn::GptConfig llama_config_from_hf(const JsonFile& cfg, const LlamaVariant& variant);
// The model's parameters taken from `hf` by their own names, except those in `given` (already
// made from other tensors); older checkpoints' RoPE tables and a tied lm_head are skipped.
NamedTensors llama_weights_from_hf(CheckpointTensors& hf, const nn::Gpt& model,
                                   const std::map<std::string, Tensor>& given = {});
// hf_dir -> qkv_dir for `variant`, with `weights` mapping the checkpoint (see lm_from_hf).
std::vector<std::string> llama_variant_from_hf(
    const std::string& hf_dir, const std::string& qkv_dir, const LlamaVariant& variant,
    const std::function<NamedTensors(CheckpointTensors&, const nn::Gpt&)>& weights);
// qkv_dir -> hf_dir for `variant` after `check(config, notes)` has refused (throwing) what the
// variant cannot express; the weights keep qkv's names. Returns the notes.
std::vector<std::string> llama_variant_to_hf(
    const std::string& qkv_dir, const std::string& hf_dir, const std::string& which,
    const LlamaVariant& variant,
    const std::function<void(const nn::GptConfig&, std::vector<std::string>&)>& check);

}  // namespace qkv::convert
