// The next token of `qkv generate`: Hugging Face transformers' logits processors, in their order
// (repetition penalty, temperature, top-k, top-p, min-p), then one draw from the softmax of the
// logits they leave. A filter removes a token by setting its logit to -inf.
#pragma once
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "tensor/rng.h"

namespace qkv::decode {

struct SamplingOptions {
  float temperature = 1.f;         // 0: greedy (argmax after the repetition penalty)
  int64_t top_k = 0;               // 0 (or >= V): off
  float top_p = 1.f;               // 1: off; in (0, 1]
  float min_p = 0.f;               // 0: off; in [0, 1]
  float repetition_penalty = 1.f;  // 1: off; > 0
  int64_t repeat_last_n = 64;      // tokens the penalty looks back on; -1: all, 0: none
  uint64_t seed = 0;
  // Throws std::invalid_argument naming the option and its value: temperature < 0 or not
  // finite, top-p <= 0 or > 1, min-p outside [0, 1], top-k < 0, repetition-penalty <= 0 or not
  // finite, repeat-last-n < -1.
  void check() const;
};

// Scratch space of the filters, kept between calls so that decoding allocates nothing per step.
struct SamplingBuffers {
  std::vector<int32_t> window;                  // distinct tokens the penalty applies to
  std::vector<float> values;                    // top-k's selection: [k] heap or [V] copy
  std::vector<std::pair<float, int32_t>> kept;  // (logit, id) of the tokens left, for top-p
  std::vector<float> weights;                   // [V] exp(logit - max)
};

// The filters in order on one row of logits [V], given the sequence so far (prompt + generated
// tokens):
// - repetition penalty: each distinct token of the last repeat_last_n of `sequence` has its
//   logit multiplied by the penalty when negative, divided by it otherwise;
// - temperature: logits / temperature; at 0 the filters below are skipped (greedy);
// - top-k: removes each logit below the k-th largest (ties with it stay);
// - top-p: in ascending order (ties by ascending id, as a stable sort), removes the tokens whose
//   cumulative softmax probability is <= 1 - top_p, never the most probable one;
// - min-p: removes each token whose probability is < min_p times the largest.
// Throws std::invalid_argument for bad options, an empty row, a NaN or +inf logit, or a token the
// penalty reads outside [0, V).
void process_logits(std::span<float> logits, std::span<const int32_t> sequence,
                    const SamplingOptions& options, SamplingBuffers& buffers);
void process_logits(std::span<float> logits, std::span<const int32_t> sequence,
                    const SamplingOptions& options);

// The first id of the largest logit. Throws std::runtime_error when every logit is -inf.
int32_t greedy_token(std::span<const float> logits);
// The token of softmax(logits) at u in [0, 1): the first whose cumulative weight (summed in
// double over ids in order) exceeds u times the total, with weights exp(logit - max) within
// 2e-7 (ops::cpu::exp_approx, 0 below -87); tokens of weight 0 are never chosen. Throws
// std::runtime_error when every logit is -inf.
int32_t token_at(std::span<const float> logits, double u, std::vector<float>& weights);

// The sampler of one sequence. Its random stream is qkv::Rng(seed) from counter
// sequence_index * 2^32 on (one counter block per draw), so a sequence's tokens do not depend on
// which others share its batch; sequence_index < 2^32.
class TokenSampler {
 public:
  TokenSampler(const SamplingOptions& options, uint64_t sequence_index);
  // logits [V] (overwritten by the filters) -> the next token: greedy at temperature 0, else
  // drawn with one uniform from the processed logits.
  int32_t next(std::span<float> logits, std::span<const int32_t> sequence);

 private:
  SamplingOptions options_;
  Rng rng_;
  SamplingBuffers buffers_;
};

}  // namespace qkv::decode
