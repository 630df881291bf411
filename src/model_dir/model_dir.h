// A model directory: what `qkv train`, `qkv train-vit` and `qkv convert` write, and what every
// command that runs, evaluates or exports a model reads. One folder per model:
//   config.yaml              the model: `model-type` (its family) and the family's config keys
//                            (nn::Seq2SeqConfig::bind, nn::ViTConfig::bind)
//   model.safetensors        the weights (training: of the last checkpoint)
//   model.best.safetensors   training: the weights with the best validation score
//   the tokenizer            language models: tokenizer.yaml and its files (data/lm_tokenizer.h);
//                            translation models: spm.model, or source.spm, target.spm and
//                            vocab.json for a converted Marian model (data::Tokenizer)
// Training adds train.yaml, metrics.jsonl and checkpoint/ (train/checkpoint.h).
//
// This layer sits above nn, data and io and below train, decode, eval, convert and cli; each
// family has its file here (seq2seq_dir.h, vit_dir.h, gpt_dir.h). A new family adds a Family,
// its name, and a <family>_dir.h with read/write of its config and load/save of the directory.
#pragma once
#include <optional>
#include <stdexcept>
#include <string>

#include "config/options.h"
#include "io/atomic_file.h"

namespace qkv::model_dir {

enum class Family { seq2seq, vit, gpt };

// The family's model-type in config.yaml: "seq2seq", "vit" or "gpt".
const char* family_name(Family family);

inline constexpr const char* kConfigFile = "config.yaml";
inline constexpr const char* kWeightsFile = "model.safetensors";
inline constexpr const char* kBestWeightsFile = "model.best.safetensors";
// Written by training, read by `qkv eval` (training curves) and by users.
inline constexpr const char* kTrainOptionsFile = "train.yaml";  // every option of the run
inline constexpr const char* kMetricsFile = "metrics.jsonl";    // one JSON line per log entry

std::string config_path(const std::string& dir);
// config_path(dir), or std::runtime_error when dir or its config.yaml does not exist.
std::string existing_config_path(const std::string& dir);
// Throws std::invalid_argument unless which is "best" or "last".
void check_which(const std::string& which);
// which: "best" (model.best.safetensors when it exists, else model.safetensors) or "last".
// Throws std::invalid_argument for another `which`, std::runtime_error when neither exists.
std::string weights_path(const std::string& dir, const std::string& which);

// The family named by dir's config.yaml (one without a model-type is seq2seq); nothing when dir
// has no readable config.yaml with a model-type qkv knows.
std::optional<Family> recognise(const std::string& dir);
// The same, or std::runtime_error naming the directory or file: no such directory, no
// config.yaml, or a model-type qkv does not know.
Family family(const std::string& dir);

// The model-type of a config file ("" when the file has none); std::runtime_error naming the
// file when it cannot be read as YAML.
std::string model_type_of(const std::string& config_file);

// A family's config file: its model-type, then the keys Config::bind registers (written
// atomically). Reading checks the model-type first, so another family's file is named as such,
// not by its first key; a file without one is read as this family, as before model-type
// existed. Errors are std::runtime_error naming the file (and line).
template <class Config>
void write_family_config(const std::string& path, Family family, Config config) {
  std::string type = family_name(family);
  Options o;
  o.add("model-type", type, "the model family");
  config.bind(o);
  write_file_atomic(path, o.to_yaml());
}

template <class Config>
Config read_family_config(const std::string& path, Family family) {
  std::string type = model_type_of(path);
  if (!type.empty() && type != family_name(family))
    throw std::runtime_error(path + ": model-type is '" + type + "', expected " +
                             family_name(family));
  Config c;
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

}  // namespace qkv::model_dir
