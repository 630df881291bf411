// Every option of `qkv train-lm`: the text data, the tokenizer, the GPT shape (a preset, then
// overrides), batches, the sample logged at each validation, and the shared optimisation /
// stopping / reporting options of LoopConfig: the same kebab-case keys on the command line and
// in YAML files (configs/gpt-bible.yaml).
#pragma once
#include <string>
#include <vector>

#include "config/options.h"
#include "nn/gpt.h"
#include "train/loop.h"

namespace qkv::train {

struct LmTrainConfig : LoopConfig {
  std::string model_dir;
  std::vector<std::string> train_sets, valid_sets;
  // Documents: one per line, or split on document-separator; text-column takes one column of
  // a TSV file (1-based; 0: the whole line).
  std::string document_separator;
  int64_t text_column = 0;
  // The tokenizer trained on the training text: chars or sentencepiece (BPE, byte fallback).
  std::string tokenizer = "sentencepiece";
  int64_t vocab_size = 4096;  // sentencepiece
  int64_t tokenizer_max_documents = 200000;
  // Model shape: a preset, then the options of nn::GptConfig::bind_shape held in `model`; the
  // numbers start at -1 and the strings empty, which take the preset's.
  std::string preset = "gpt-nano";
  nn::GptConfig model;
  std::string bias = "preset", tie_embeddings = "preset";  // or true / false
  int64_t batch_size = 12;  // windows of context-length tokens per batch
  // Validation: at most valid-max-tokens tokens of the validation text (0: all), and a sample
  // of sample-tokens tokens from sample-prompt in the log.
  int64_t valid_max_tokens = 65536;
  std::string sample_prompt = "In the beginning";
  int64_t sample_tokens = 48;

  LmTrainConfig();  // the language-model defaults of LoopConfig (AdamW, cosine, ...)
  void bind(Options& options);
  // Throws std::invalid_argument naming the first option with an impossible value.
  void validate() const;
  // The model shape asked for (preset + overrides) for a tokenizer of `vocab` tokens.
  nn::GptConfig model_config(int64_t vocab, int32_t bos_id, int32_t eos_id) const;
};

}  // namespace qkv::train
