// Hugging Face ViTForImageClassification folders <-> qkv ViT model directories.
// qkv's ViT already uses HF's parameter names; config.json maps onto nn::ViTConfig and
// preprocessor_config.json's image_mean / image_std onto its input normalisation.
#pragma once
#include <string>
#include <vector>

namespace qkv::convert {

// Returns notes for the user; throws std::runtime_error naming the file and the problem.
std::vector<std::string> vit_from_hf(const std::string& hf_dir, const std::string& qkv_dir);
std::vector<std::string> vit_to_hf(const std::string& qkv_dir, const std::string& hf_dir,
                                   const std::string& which = "best");

}  // namespace qkv::convert
