// Text in, text out: tokenizes sentences, translates them in batches sorted by length (results
// come back in input order), and detokenizes. An empty line translates to an empty line; a
// sentence longer than the model accepts is truncated to the first max_source_tokens subwords
// (counted, so the caller can warn).
#pragma once
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "decode/search.h"

namespace qkv::decode {

struct TranslatorOptions {
  SearchOptions search;
  int64_t batch_tokens = 4096;    // source subwords per batch (padded)
  int64_t max_source_tokens = 0;  // 0: what the model's positions allow
  // The decoder's products (ops/compute_type.h); the encoder's follow its Linear layers
  // (nn::set_compute_type).
  ops::ComputeType compute_type = ops::ComputeType::f32;
};

struct Translation {
  std::string text;
  float log_prob = 0, score = 0;
  std::vector<int32_t> tokens;
};

class Translator {
 public:
  Translator(const nn::Seq2Seq& model, const data::Tokenizer& tokenizer,
             const TranslatorOptions& options);
  // One n-best list per input line (an empty line gives one empty translation).
  std::vector<std::vector<Translation>> translate(const std::vector<std::string>& lines);
  // The same with other search options and batch size (a server's requests, a Python call, each
  // bring their own); max_length is clamped to the model's positions.
  std::vector<std::vector<Translation>> translate(const std::vector<std::string>& lines,
                                                  SearchOptions search, int64_t batch_tokens);
  // Sentences cut to max_source_tokens so far.
  int64_t truncated() const { return truncated_; }

 private:
  const nn::Seq2Seq& model_;
  PackedDecoder weights_;  // packed once, for every batch
  const data::Tokenizer& tokenizer_;
  TranslatorOptions options_;
  int64_t truncated_ = 0;
};

}  // namespace qkv::decode
