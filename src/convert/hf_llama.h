// Hugging Face LlamaForCausalLM folders <-> qkv gpt model directories (nn::GptConfig with RoPE,
// RMSNorm and a SwiGLU MLP). qkv's GPT parameters carry Llama's names, and Hugging Face stores
// Llama's query and key projections for the rotate-half RoPE that qkv computes, so the weights
// map one to one.
//
// config.json: hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
// num_key_value_heads (default: heads), head_dim (must be hidden_size / heads), rms_norm_eps,
// rope_theta (default 10000; or rope_parameters {"rope_type": "default", "rope_theta": ...}),
// max_position_embeddings (context-length), vocab_size, tie_word_embeddings (default false),
// attention_bias and mlp_bias (equal: qkv has one `bias`), hidden_act (silu), bos/eos_token_id.
// Every other key must be one that does not change the computation (the list is in
// hf_llama.cpp: torch_dtype, use_cache, generation defaults, ...); rope_scaling, sliding windows,
// attention other than the standard one, and any key qkv does not know are refused by name.
// The tokenizer: tokenizer.model (see hf_causal_lm.h).
#pragma once
#include <string>
#include <vector>

namespace qkv::convert {

// Returns notes for the user; throws std::runtime_error naming the file and the key, tensor or
// file that is missing, unsupported or wrongly shaped.
std::vector<std::string> llama_from_hf(const std::string& hf_dir, const std::string& qkv_dir);
// which: the checkpoint of the qkv directory, "best" or "last". Throws std::runtime_error naming
// the option a LlamaForCausalLM cannot express (positions learned, norm layernorm, mlp gelu).
std::vector<std::string> llama_to_hf(const std::string& qkv_dir, const std::string& hf_dir,
                                     const std::string& which = "best");

}  // namespace qkv::convert
