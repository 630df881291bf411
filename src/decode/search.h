// Greedy and beam search over a batch of source sentences.
#pragma once
#include <vector>

#include "decode/packed_decoder.h"

namespace qkv::decode {

struct SearchOptions {
  int beam = 1;                 // 1: greedy
  int n_best = 1;               // hypotheses returned per sentence (<= beam)
  float length_penalty = 1.0f;  // finished scores are divided by length^length_penalty
  // Most target tokens (with <eos>) per sentence: max_length_ratio * source length +
  // max_length_offset, and never more than max_length.
  float max_length_ratio = 2.0f;
  int64_t max_length_offset = 10;
  int64_t max_length = 256;
  // Fewest tokens (without <eos>) a hypothesis has before <eos> may end it; the length limit
  // above still wins. With max_length = min_length + 1 every output has exactly min_length
  // tokens (benchmarks use this to decode a fixed length).
  int64_t min_length = 0;
};

struct Hypothesis {
  std::vector<int32_t> tokens;  // without <bos> and <eos>
  float log_prob = 0;           // total, including <eos> when it ended with one
  float score = 0;              // log_prob normalised by the length penalty; hyps sort by it
};

// src i32 [B, S], src_lengths i32 [B] -> for each sentence, up to n_best hypotheses, best first.
std::vector<std::vector<Hypothesis>> search(const PackedDecoder& weights, const Tensor& src,
                                            const Tensor& src_lengths,
                                            const SearchOptions& options);
// The same, packing the model's decoder weights for this search only.
std::vector<std::vector<Hypothesis>> search(const nn::Seq2Seq& model, const Tensor& src,
                                            const Tensor& src_lengths,
                                            const SearchOptions& options);

}  // namespace qkv::decode
