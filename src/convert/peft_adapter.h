// peft LoRA adapter folders of the Hugging Face models qkv converts <-> qkv adapter directories
// (model_dir/adapter_dir.h) of the converted models.
//
// Module names: MarianMTModel, ViTForImageClassification and LlamaForCausalLM modules carry
// qkv's names, so their updates map one to one. GPT2LMHeadModel's map as its weights do
// (hf_gpt2.h), each Conv1D's update stored as peft stores it, lora_A [r, in], lora_B [out, r]:
//   transformer.h.N.attn.c_attn  <-> model.layers.N.self_attn.{q,k,v}_proj
//       one update of rank R whose lora_B rows are q | k | v: read, each of q, k, v gets lora_A
//       and its rows of lora_B (rank components whose rows there are all zero dropped, unless
//       all are); written, lora_A is the three lora_A stacked [r_q + r_k + r_v, in] and lora_B
//       is block-diagonal [3d, r_q + r_k + r_v] (a missing projection has no block)
//   attn.c_proj <-> self_attn.o_proj, mlp.c_fc <-> mlp.up_proj, mlp.c_proj <-> mlp.down_proj
// Scaling: the written config keeps the read one's r, lora_alpha, use_rslora and lora_dropout;
// target_modules become the fewest name endings that select exactly the updated modules, and
// rank_pattern and alpha_pattern are written for the modules whose rank or scaling differ.
// Where one update joins or splits others of different scaling, the remaining factor is
// multiplied into lora_B, so every module's scaling * B A is what it was.
#pragma once
#include <string>
#include <vector>

namespace qkv::convert {

// Writes the peft folder peft_dir (adapter_config.json with adapter_model.safetensors or
// adapter_model.bin), an adapter of the Hugging Face model that was converted into the qkv
// model directory qkv_model_dir, as the qkv adapter directory out_dir of that model. Returns
// notes for the user. Throws std::runtime_error naming the file and the option, tensor or
// module that is unsupported, corrupt or not in the model; out_dir is then not written.
std::vector<std::string> peft_adapter_from_hf(const std::string& peft_dir,
                                              const std::string& qkv_model_dir,
                                              const std::string& out_dir);

// Writes the qkv adapter directory adapter_dir, an adapter of qkv_model_dir's `which` weights
// ("best" or "last", for the adapter's weights too), as the peft folder peft_dir of hf_dir, the
// Hugging Face folder that `qkv convert --to hf` wrote from that model. Throws
// std::runtime_error naming both when the adapter belongs to another base, and naming the file
// for anything missing or corrupt; peft_dir is then not written.
std::vector<std::string> peft_adapter_to_hf(const std::string& adapter_dir,
                                            const std::string& qkv_model_dir,
                                            const std::string& which, const std::string& hf_dir,
                                            const std::string& peft_dir);

}  // namespace qkv::convert
