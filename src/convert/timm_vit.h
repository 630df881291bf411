// timm VisionTransformer folders (what timm's push_to_hf_hub / save_for_hf writes: config.json
// with "architecture", "num_classes", "pretrained_cfg", and model.safetensors or
// pytorch_model.bin with timm's parameter names) -> qkv ViT model directories.
//
// timm's ViT is qkv's (pre-norm blocks, class token, learned positions, final LayerNorm, a head
// on the class token) with other names, the attention's q, k, v packed in one `qkv` linear, and
// LayerNorm eps 1e-6. Sizes come from the tensors; the number of heads from config.json's
// "model_args" or the architecture's size (vit_tiny 3, vit_small 6, vit_medium 8, vit_base 12,
// vit_large and larger 16); class names from "label_names" (else "0", "1", ...); the input
// normalisation from pretrained_cfg's mean and std. Variants qkv lacks (average pooling,
// register tokens, layer scale, pre-norm of the embeddings, no class token) are errors naming
// what is not supported.
#pragma once
#include <string>
#include <vector>

namespace qkv::convert {

// Whether dir/config.json is a timm model's (it has "architecture", not "model_type").
bool is_timm_folder(const std::string& dir);

// Returns notes for the user; throws std::runtime_error naming the file and the problem.
std::vector<std::string> vit_from_timm(const std::string& dir, const std::string& qkv_dir);

}  // namespace qkv::convert
