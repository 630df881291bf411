#include "model_dir/gpt_dir.h"

#include <filesystem>
#include <stdexcept>

#include "io/safetensors.h"
#include "model_dir/quantized_weights.h"

namespace qkv::model_dir {

namespace fs = std::filesystem;

void write_config(const std::string& path, const nn::GptConfig& config) {
  write_family_config(path, Family::gpt, config);
}

nn::GptConfig read_gpt_config(const std::string& path) {
  nn::GptConfig c = read_family_config<nn::GptConfig>(path, Family::gpt);
  try {
    c.check(path);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(e.what());
  }
  return c;
}

LanguageModel load_language_model_dir(const std::string& dir, const std::string& which) {
  check_which(which);
  std::string config_file = existing_config_path(dir);
  nn::GptConfig config = read_gpt_config(config_file);
  LanguageModel m;
  m.tokenizer = data::LmTokenizer::load_dir(dir);
  const data::LmTokenizer& tok = *m.tokenizer;
  if (tok.vocab_size() > config.vocab_size)
    throw std::runtime_error(dir + ": the tokenizer has " + std::to_string(tok.vocab_size()) +
                             " tokens, more than config.yaml's vocab-size " +
                             std::to_string(config.vocab_size));
  if (tok.bos_id() != config.bos_id || tok.eos_id() != config.eos_id)
    throw std::runtime_error(dir + ": the tokenizer's bos/eos ids (" +
                             std::to_string(tok.bos_id()) + ", " + std::to_string(tok.eos_id()) +
                             ") differ from config.yaml's (" + std::to_string(config.bos_id) +
                             ", " + std::to_string(config.eos_id) + ")");
  m.model = std::make_unique<nn::Gpt>(config);
  m.weights_path = weights_path(dir, which);
  nn::load_params(m.model->params(), load_weights(m.weights_path), m.weights_path);
  return m;
}

void save_gpt_dir(const std::string& dir, const nn::GptConfig& config,
                  const nn::ParamList& params) {
  fs::create_directories(dir);
  write_config(config_path(dir), config);
  save_safetensors((fs::path(dir) / kWeightsFile).string(), nn::param_tensors(params));
}

}  // namespace qkv::model_dir
