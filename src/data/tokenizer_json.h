// A byte-level BPE tokenizer as Hugging Face's `tokenizers` saves it, in one tokenizer.json
// (Llama 3's tokenizer, and GPT-2's where it comes without vocab.json and merges.txt). What
// the file may hold is what qkv's ByteBpe computes exactly:
// - model: {"type": "BPE", "vocab": {token: id}, "merges": ["a b", ...] or [["a", "b"], ...],
//   "ignore_merges": a word that is itself a token is that token, unmerged}; no dropout, byte
//   fallback, continuing-subword prefix or end-of-word suffix;
// - normalizer: none;
// - pre_tokenizer: ByteLevel with its GPT-2 pattern, or Split on Llama 3's pattern (Isolated)
//   followed by ByteLevel without a pattern (data/bpe_pretokenizer.h), no prefix space;
// - added_tokens: each split off the text before pre-tokenisation (the longest of those that
//   start first), becoming its id; none may strip the spaces beside it or match whole words only;
// - post_processor: at most one special token before the text (Llama 3's <|begin_of_text|>).
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "data/bpe_pretokenizer.h"

namespace qkv::data {

struct TokenizerJson {
  std::vector<std::string> tokens;  // id -> token: the model's vocabulary and the added tokens
  std::vector<bool> in_model;       // id -> whether the model's vocabulary holds it
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  bool ignore_merges = false;
  Pretokenizer pretokenizer = Pretokenizer::gpt2;
  std::vector<std::pair<std::string, int32_t>> added_tokens;  // content, id
  std::string bos_token;  // the post-processor's token before the text ("": none)
};

// Parses tokenizer.json's text; std::runtime_error naming `path` and the offending field.
TokenizerJson parse_tokenizer_json(const std::string& text, const std::string& path);

}  // namespace qkv::data
