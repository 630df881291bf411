// Every option of `qkv train`: the same kebab-case keys on the command line and in YAML config
// files (configs/*.yaml), as Marian does it.
#pragma once
#include <string>
#include <vector>

#include "config/options.h"
#include "nn/seq2seq.h"
#include "train/loop.h"

namespace qkv::train {

struct TrainConfig : LoopConfig {
  std::string model_dir;
  std::vector<std::string> train_sets, valid_sets;
  // Model shape: a preset, then the options of nn::Seq2SeqConfig::bind_shape (the keys of a
  // model directory's config.yaml) held in `model`. Its d-model, heads, d-ff, encoder-layers,
  // decoder-layers (0) and activation ("") start unset and take the preset's; vocab-size is
  // that of the SentencePiece model trained (the model gets the tokenizer's).
  std::string preset = "tiny";
  nn::Seq2SeqConfig model;
  // Subwords.
  std::string spm_type = "unigram", spm_model;
  int64_t spm_max_sentences = 200000;
  // Batches.
  int64_t batch_tokens = 2048, update_tokens = 0, max_length = 128;
  int64_t valid_max_sentences = 500;
  // Stopping, optimisation and reporting: the fields of LoopConfig (train/loop.h).
  std::string config;  // the YAML file these came from, if any

  TrainConfig();  // the training defaults of `model` (shape unset, max-positions 512)
  // Registers every option on `options`, bound to this object's fields.
  void bind(Options& options);
  // The model shape this config asks for (preset + overrides), for `vocab` subwords.
  nn::Seq2SeqConfig model_config(int64_t vocab) const;
  // Throws std::invalid_argument naming the first option with an impossible value.
  void validate() const;
};

}  // namespace qkv::train
