// A ViT image classifier's model directory, model-type vit: config.yaml (the shape, the class
// names and the input normalisation), model.safetensors and, after validation,
// model.best.safetensors (see model_dir.h).
#pragma once
#include <memory>
#include <string>

#include "model_dir/model_dir.h"
#include "nn/params.h"
#include "nn/vit.h"

namespace qkv::model_dir {

// config.yaml: model-type vit, then every key of nn::ViTConfig::bind.
void write_config(const std::string& path, const nn::ViTConfig& config);
// Throws std::runtime_error naming the file for a missing file, another model-type, an unknown
// key or a bad value.
nn::ViTConfig read_vit_config(const std::string& path);

// which: "best" or "last" (see weights_path). Throws std::runtime_error naming the directory
// or file for anything missing or mismatched.
std::unique_ptr<nn::ViT> load_vit_dir(const std::string& dir, const std::string& which = "best");

// Writes a complete directory (created if needed): config.yaml and model.safetensors.
void save_vit_dir(const std::string& dir, const nn::ViTConfig& config, const nn::ParamList& params);

}  // namespace qkv::model_dir
