// A language model's directory, model-type gpt: config.yaml (nn::GptConfig), the tokenizer
// (tokenizer.yaml and its files, data/lm_tokenizer.h), model.safetensors and, after
// validation, model.best.safetensors (see model_dir.h).
#pragma once
#include <memory>
#include <string>

#include "data/lm_tokenizer.h"
#include "model_dir/model_dir.h"
#include "nn/gpt.h"

namespace qkv::model_dir {

// config.yaml: model-type gpt, then every key of nn::GptConfig::bind.
void write_config(const std::string& path, const nn::GptConfig& config);
// Throws std::runtime_error naming the file for a missing file, another model-type, an unknown
// key or a bad value.
nn::GptConfig read_gpt_config(const std::string& path);

struct LanguageModel {
  std::unique_ptr<nn::Gpt> model;
  std::unique_ptr<data::LmTokenizer> tokenizer;
  std::string weights_path;
};

// which: "best" or "last" (see weights_path). Throws std::runtime_error naming the directory
// or file for anything missing or mismatched (a tokenizer larger than the model's vocabulary,
// special ids that differ from config.yaml's).
LanguageModel load_language_model_dir(const std::string& dir, const std::string& which = "best");

// Writes config.yaml and model.safetensors into dir (created if needed); the tokenizer is saved
// by its own save().
void save_gpt_dir(const std::string& dir, const nn::GptConfig& config, const nn::ParamList& params);

}  // namespace qkv::model_dir
