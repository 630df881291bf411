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
  // Model shape: a preset, then any of these (0 / "" keep the preset's value).
  std::string preset = "tiny";
  int64_t d_model = 0, heads = 0, d_ff = 0, encoder_layers = 0, decoder_layers = 0;
  std::string activation;
  bool pre_norm = false, tie_embeddings = true;
  int64_t max_positions = 512;
  // Subwords.
  int64_t vocab_size = 8000;
  std::string spm_type = "unigram", spm_model;
  int64_t spm_max_sentences = 200000;
  // Batches.
  int64_t batch_tokens = 2048, update_tokens = 0, max_length = 128;
  int64_t valid_max_sentences = 500;
  // Stopping, optimisation and reporting: the fields of LoopConfig (train/loop.h).
  std::string config;  // the YAML file these came from, if any

  // Registers every option on `options`, bound to this object's fields.
  void bind(Options& options);
  // The model shape this config asks for (preset + overrides), for `vocab` subwords.
  nn::Seq2SeqConfig model_config(int64_t vocab) const;
  // Throws std::invalid_argument naming the first option with an impossible value.
  void validate() const;
};

}  // namespace qkv::train
