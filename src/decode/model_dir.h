// A trained translation model as `qkv train` leaves it in a directory: config.yaml, spm.model,
// model.safetensors (the last checkpoint) and model.best.safetensors (best dev BLEU). A model
// converted from Hugging Face (`qkv convert`) has source.spm, target.spm and vocab.json instead
// of spm.model (see data::Tokenizer).
#pragma once
#include <memory>
#include <string>

#include "data/tokenizer.h"
#include "nn/seq2seq.h"

namespace qkv::decode {

struct LoadedModel {
  std::unique_ptr<nn::Seq2Seq> model;
  std::unique_ptr<data::Tokenizer> tokenizer;
  std::string weights_path;
};

// which: "best" (model.best.safetensors when it exists, else model.safetensors) or "last".
// Throws std::runtime_error naming the directory or file for anything missing or mismatched.
LoadedModel load_model_dir(const std::string& dir, const std::string& which = "best");

}  // namespace qkv::decode
