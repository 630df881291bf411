#include "model_dir/vit_dir.h"

#include <filesystem>
#include <stdexcept>

#include "io/safetensors.h"
#include "model_dir/quantized_weights.h"

namespace qkv::model_dir {

namespace fs = std::filesystem;

void write_config(const std::string& path, const nn::ViTConfig& config) {
  write_family_config(path, Family::vit, config);
}

nn::ViTConfig read_vit_config(const std::string& path) {
  return read_family_config<nn::ViTConfig>(path, Family::vit);
}

std::unique_ptr<nn::ViT> load_vit_dir(const std::string& dir, const std::string& which) {
  check_which(which);
  std::string config_file = existing_config_path(dir);
  auto model = std::make_unique<nn::ViT>(read_vit_config(config_file));
  std::string weights = weights_path(dir, which);
  nn::load_params(model->params(), load_weights(weights), weights);
  return model;
}

void save_vit_dir(const std::string& dir, const nn::ViTConfig& config,
                  const nn::ParamList& params) {
  fs::create_directories(dir);
  write_config(config_path(dir), config);
  save_safetensors((fs::path(dir) / kWeightsFile).string(), nn::param_tensors(params));
}

}  // namespace qkv::model_dir
