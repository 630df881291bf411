// The best continuations of each row of a decoding step, under the log-softmax of its logits,
// without writing the log-softmax of the whole vocabulary.
#pragma once
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace qkv::decode {

struct BestTokens {
  int64_t n = 0;                                // entries per row
  std::vector<std::pair<float, int32_t>> best;  // [rows, n]: (log-prob, id), best first
  std::vector<float> eos_log_prob;              // [rows]
};

// logits f32 [rows, V] -> for each row, the log-prob of `eos` and the n best other tokens that
// are not in `skip`, ties to the lower id (entries past the last such token: (-inf, -1)). The
// log-probs equal ops::log_softmax_forward's: (x - max) - log(sum(exp(x - max))). Logits on
// cuda are reduced there (ops::best_tokens_rows, n <= 32) and only the candidates are copied.
void best_tokens(const Tensor& logits, int64_t n, const std::vector<int32_t>& skip, int32_t eos,
                 BestTokens& out);

}  // namespace qkv::decode
