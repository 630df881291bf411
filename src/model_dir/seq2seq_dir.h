// A translation (encoder-decoder) model directory, model-type seq2seq: config.yaml, the
// tokenizer (spm.model, or source.spm + target.spm + vocab.json from a converted Marian model),
// model.safetensors and, after validation, model.best.safetensors (see model_dir.h).
#pragma once
#include <memory>
#include <string>

#include "data/tokenizer.h"
#include "model_dir/model_dir.h"
#include "nn/params.h"
#include "nn/seq2seq.h"

namespace qkv::model_dir {

// config.yaml: model-type seq2seq, then every key of nn::Seq2SeqConfig::bind.
void write_config(const std::string& path, const nn::Seq2SeqConfig& config);
// Throws std::runtime_error naming the file for a missing file, another model-type, an unknown
// key or a bad value.
nn::Seq2SeqConfig read_seq2seq_config(const std::string& path);

struct TranslationModel {
  std::unique_ptr<nn::Seq2Seq> model;
  std::unique_ptr<data::Tokenizer> tokenizer;
  std::string weights_path;
};

// which: "best" or "last" (see weights_path). Throws std::runtime_error naming the directory
// or file for anything missing or mismatched (the tokenizer's size and special ids against
// config.yaml's).
TranslationModel load_translation_dir(const std::string& dir, const std::string& which = "best");

// Writes a complete directory (created if needed): config.yaml, the tokenizer's files and
// model.safetensors with `params`.
void save_translation_dir(const std::string& dir, const nn::Seq2SeqConfig& config,
                          const data::Tokenizer& tokenizer, const nn::ParamList& params);

}  // namespace qkv::model_dir
