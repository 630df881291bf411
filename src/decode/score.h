// Forced decoding: the log-probability a model gives each target sentence of a parallel
// corpus (summed over its subwords and the final <eos>), the researcher's parity interface.
#pragma once
#include <vector>

#include "data/tokenizer.h"
#include "nn/seq2seq.h"

namespace qkv::decode {

struct PairScore {
  double log_prob = 0;
  int64_t tokens = 0;  // target subwords + <eos>
};

// Log-probability of each row's target (tgt_out up to tgt_lengths) given its source: [B].
std::vector<double> score_batch(const nn::Seq2Seq& model, const Tensor& src,
                                const Tensor& src_lengths, const Tensor& tgt_in,
                                const Tensor& tgt_out, const Tensor& tgt_lengths);

// One score per pair, in input order. Throws std::invalid_argument when a side is longer than
// the model's max-positions (scores of truncated sentences would be meaningless).
std::vector<PairScore> score_pairs(const nn::Seq2Seq& model, const data::Tokenizer& tokenizer,
                                   const std::vector<std::string>& sources,
                                   const std::vector<std::string>& targets, int64_t batch_tokens);

}  // namespace qkv::decode
