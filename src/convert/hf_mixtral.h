// Hugging Face MixtralForCausalLM folders <-> qkv gpt model directories whose every layer is a
// Mixture of Experts (nn::MoeOptions: moe-experts E, moe-top-k k, moe-every 1): Llama's
// attention, norms and embeddings (hf_llama.h), and a sparse MoE block of E SwiGLU experts in
// place of the MLP. qkv's parameters carry Mixtral's names, so the classic layout maps one to
// one:
//   model.layers.N.block_sparse_moe.gate.weight [E, d]           the router
//   model.layers.N.block_sparse_moe.experts.M.w1.weight [ff, d]  gate (silu)
//   model.layers.N.block_sparse_moe.experts.M.w3.weight [ff, d]  up
//   model.layers.N.block_sparse_moe.experts.M.w2.weight [d, ff]  down
// Transformers 5 holds each layer's experts fused (MixtralExperts, and the "mixtral" entry of
// conversion_mapping.py that builds them from the classic names):
//   model.layers.N.mlp.gate.weight [E, d]
//   model.layers.N.mlp.experts.gate_up_proj [E, 2 ff, d]  rows [0, ff) w1, rows [ff, 2 ff) w3
//   model.layers.N.mlp.experts.down_proj [E, d, ff]       w2
// Its save_pretrained writes the classic names back by default; folders saved with
// save_original_format=False keep the fused ones. Either layout is read (per layer); the
// classic one is written.
//
// config.json: Llama's keys with MixtralConfig's defaults (num_key_value_heads 8, rms_norm_eps
// 1e-5, rope_theta 1e6, max_position_embeddings 131072, intermediate_size 14336), no biases,
// num_local_experts (E, default 8) and num_experts_per_tok (k, default 2; at least 2: Mixtral
// renormalises the chosen probabilities, qkv's top-1 is Switch's, which does not),
// sliding_window null or at least max_position_embeddings. router_aux_loss_coef,
// router_jitter_noise and output_router_logits only matter while training and are ignored.
#pragma once
#include <string>
#include <vector>

namespace qkv::convert {

// Returns notes for the user; throws std::runtime_error naming the file and the key, tensor or
// file that is missing, unsupported or wrongly shaped.
std::vector<std::string> mixtral_from_hf(const std::string& hf_dir, const std::string& qkv_dir);
// which: the checkpoint of the qkv directory, "best" or "last". Throws std::runtime_error naming
// the option a MixtralForCausalLM cannot express (no MoE, moe-every other than 1, moe-top-k 1,
// bias, and what Llama refuses); moe-capacity-factor only limits training and is left out with
// a note.
std::vector<std::string> mixtral_to_hf(const std::string& qkv_dir, const std::string& hf_dir,
                                       const std::string& which = "best");

}  // namespace qkv::convert
