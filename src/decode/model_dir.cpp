#include "decode/model_dir.h"

#include <filesystem>

namespace qkv::decode {

namespace fs = std::filesystem;

LoadedModel load_model_dir(const std::string& dir, const std::string& which) {
  if (which != "best" && which != "last")
    throw std::invalid_argument("--checkpoint must be best or last, not '" + which + "'");
  if (!fs::is_directory(dir)) throw std::runtime_error(dir + ": no such model directory");
  if (!fs::exists(fs::path(dir) / "config.yaml"))
    throw std::runtime_error(dir + ": not a qkv model directory (no config.yaml)");
  LoadedModel m;
  nn::Seq2SeqConfig config = nn::Seq2SeqConfig::load(dir + "/config.yaml");
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
  m.weights_path = dir + "/model.best.safetensors";
  if (which == "last" || !fs::exists(m.weights_path)) m.weights_path = dir + "/model.safetensors";
  if (!fs::exists(m.weights_path))
    throw std::runtime_error(dir + ": no model.safetensors (has training written a checkpoint?)");
  m.model = std::make_unique<nn::Seq2Seq>(config);
  nn::load_params(m.model->params(), load_safetensors(m.weights_path), m.weights_path);
  return m;
}

}  // namespace qkv::decode
