#include "model_dir/seq2seq_dir.h"

#include <filesystem>
#include <stdexcept>

#include "io/safetensors.h"
#include "model_dir/quantized_weights.h"

namespace qkv::model_dir {

namespace fs = std::filesystem;

void write_config(const std::string& path, const nn::Seq2SeqConfig& config) {
  write_family_config(path, Family::seq2seq, config);
}

nn::Seq2SeqConfig read_seq2seq_config(const std::string& path) {
  return read_family_config<nn::Seq2SeqConfig>(path, Family::seq2seq);
}

TranslationModel load_translation_dir(const std::string& dir, const std::string& which) {
  check_which(which);
  std::string config_file = existing_config_path(dir);
  TranslationModel m;
  nn::Seq2SeqConfig config = read_seq2seq_config(config_file);
  m.tokenizer = std::make_unique<data::Tokenizer>(data::Tokenizer::load_dir(dir));
  if (m.tokenizer->vocab_size() != config.vocab_size)
    throw std::runtime_error(
        dir + ": the tokenizer has " + std::to_string(m.tokenizer->vocab_size()) +
        " subwords but config.yaml says vocab-size " + std::to_string(config.vocab_size));
  const data::SpecialIds& ids = m.tokenizer->specials();
  if (ids.pad != config.pad_id || ids.unk != config.unk_id || ids.eos != config.eos_id ||
      (ids.bos >= 0 && ids.bos != config.bos_id))
    throw std::runtime_error(dir +
                             ": the tokenizer's special ids (pad, unk, eos) differ from "
                             "config.yaml's pad-id, unk-id, eos-id");
  m.weights_path = weights_path(dir, which);
  m.model = std::make_unique<nn::Seq2Seq>(config);
  nn::load_params(m.model->params(), load_weights(m.weights_path), m.weights_path);
  return m;
}

void save_translation_dir(const std::string& dir, const nn::Seq2SeqConfig& config,
                          const data::Tokenizer& tokenizer, const nn::ParamList& params) {
  fs::create_directories(dir);
  write_config(config_path(dir), config);
  tokenizer.save(dir);
  save_safetensors((fs::path(dir) / kWeightsFile).string(), nn::param_tensors(params));
}

}  // namespace qkv::model_dir
