// Hugging Face GPT2LMHeadModel folders <-> qkv gpt model directories (nn::GptConfig with learned
// positions, LayerNorm, a gelu or gelu_tanh MLP and biases).
//
// config.json: n_embd, n_layer, n_head, n_positions (context-length), n_inner (null: 4 n_embd),
// activation_function (gelu_new, gelu_pytorch_tanh, gelu_fast -> gelu_tanh; gelu),
// layer_norm_epsilon, vocab_size, tie_word_embeddings (default true), resid_pdrop (dropout).
// Refused by name: scale_attn_weights false, scale_attn_by_inverse_layer_idx true,
// add_cross_attention true, an architecture other than GPT2LMHeadModel / GPT2Model.
//
// Weights ("transformer." prefix, absent in GPT2Model checkpoints):
//   wte -> model.embed_tokens, wpe -> model.embed_positions, ln_f -> model.norm
//   h.N.ln_1 -> model.layers.N.input_layernorm, h.N.ln_2 -> post_attention_layernorm
//   h.N.attn.c_attn (Conv1D [d, 3d], output columns q | k | v) -> self_attn.{q,k,v}_proj
//   h.N.attn.c_proj -> self_attn.o_proj, h.N.mlp.c_fc -> mlp.up_proj, mlp.c_proj -> down_proj
//   lm_head.weight only when untied; the attn.bias / attn.masked_bias buffers are skipped.
// A Conv1D stores its weight [in, out] (y = x W + b): it is transposed to qkv's [out, in].
// The tokenizer: vocab.json and merges.txt (see hf_causal_lm.h).
#pragma once
#include <string>
#include <vector>

namespace qkv::convert {

// Returns notes for the user; throws std::runtime_error naming the file and the key, tensor or
// file that is missing, unsupported or wrongly shaped.
std::vector<std::string> gpt2_from_hf(const std::string& hf_dir, const std::string& qkv_dir);
// which: the checkpoint of the qkv directory, "best" or "last". Throws std::runtime_error naming
// the option a GPT2LMHeadModel cannot express (positions rope, norm rmsnorm, mlp swiglu, no
// biases, kv-heads other than heads, moe-experts).
std::vector<std::string> gpt2_to_hf(const std::string& qkv_dir, const std::string& hf_dir,
                                    const std::string& which = "best");

}  // namespace qkv::convert
