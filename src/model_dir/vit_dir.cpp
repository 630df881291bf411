#include "model_dir/vit_dir.h"

#include <filesystem>
#include <stdexcept>

#include "io/atomic_file.h"
#include "io/safetensors.h"

namespace qkv::model_dir {

namespace fs = std::filesystem;

void write_config(const std::string& path, const nn::ViTConfig& config) {
  nn::ViTConfig copy = config;
  std::string type = family_name(Family::vit);
  Options o;
  o.add("model-type", type, "the model family");
  copy.bind(o);
  write_file_atomic(path, o.to_yaml());
}

nn::ViTConfig read_vit_config(const std::string& path) {
  // The family first, so that another family's file is named as such, not by its first key
  // (a ViT config.yaml without model-type loads, as it did).
  std::string type = model_type_of(path);
  if (!type.empty() && type != family_name(Family::vit))
    throw std::runtime_error(path + ": model-type is '" + type + "', expected vit");
  nn::ViTConfig c;
  Options o;
  o.add("model-type", type, "the model family");
  c.bind(o);
  try {
    o.load_yaml(path);
    c.check(path);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(e.what());
  }
  return c;
}

std::unique_ptr<nn::ViT> load_vit_dir(const std::string& dir, const std::string& which) {
  check_which(which);
  std::string config_file = existing_config_path(dir);
  auto model = std::make_unique<nn::ViT>(read_vit_config(config_file));
  std::string weights = weights_path(dir, which);
  nn::load_params(model->params(), load_safetensors(weights), weights);
  return model;
}

void save_vit_dir(const std::string& dir, const nn::ViTConfig& config,
                  const nn::ParamList& params) {
  fs::create_directories(dir);
  write_config(config_path(dir), config);
  save_safetensors((fs::path(dir) / kWeightsFile).string(), nn::param_tensors(params));
}

}  // namespace qkv::model_dir
