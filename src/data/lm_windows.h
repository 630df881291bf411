// Batches of token windows for decoder-only language models, cut from a token stream
// (data/lm_text.h): inputs are L consecutive tokens, targets the same L positions shifted by one,
// so the model predicts every next token.
//
// Training (nanoGPT's get_batch): batch k draws B start offsets s uniformly from
// [0, N - L - 1]; row b is inputs = stream[s, s + L), targets = stream[s + 1, s + L + 1).
// The draws are a pure function of (seed, k): a run that stores position() and calls seek()
// after a restart continues with exactly the same batches.
//
// Evaluation: consecutive windows of L + 1 tokens that overlap by one token, so that every
// token after the first is a target exactly once; the last window is padded.
#pragma once
#include <cstdint>
#include <vector>

#include "data/lm_text.h"
#include "tensor/tensor.h"

namespace qkv::data {

constexpr int32_t kIgnoreTarget = -1;  // a target that is not scored (cross_entropy's ignore_index)

struct LmBatch {
  Tensor inputs;              // i32 [B, L]
  Tensor targets;             // i32 [B, L]: targets[b, t] follows inputs[b, t]; or kIgnoreTarget
  int64_t scored_tokens = 0;  // targets that are not kIgnoreTarget
  int64_t rows() const { return inputs.size(0); }
};

class WindowSampler {
 public:
  // Throws std::invalid_argument for context or batch_size < 1 and for a stream of at most
  // `context` tokens (shorter than one window of context + 1 tokens).
  WindowSampler(std::vector<int32_t> stream, int64_t context, int64_t batch_size, uint64_t seed);

  int64_t tokens() const { return int64_t(stream_.size()); }
  int64_t context() const { return context_; }
  int64_t batch_size() const { return batch_size_; }

  // The B start offsets of batch `index` (>= 0), each in [0, N - L - 1]. Row b uses Philox block
  // index * B + b of the seed; its 64 bits modulo N - L (a bias below (N - L) / 2^64).
  std::vector<int64_t> starts(int64_t index) const;
  // Batch `index`, computed from scratch.
  LmBatch batch(int64_t index) const;

  // The batch at position(), then moves on by one.
  LmBatch next() { return batch(position_++); }
  // Moves on by one without drawing the batch (another rank's batch).
  void skip() { ++position_; }
  // The index of the batch next() returns; store it in a checkpoint to resume.
  int64_t position() const { return position_; }
  // Continues from batch `index` (>= 0; std::invalid_argument otherwise).
  void seek(int64_t index);

 private:
  std::vector<int32_t> stream_;
  int64_t context_, batch_size_;
  uint64_t seed_;
  int64_t position_ = 0;
};

struct EvalWindows {
  // Windows in stream order, B per batch (the last batch may have fewer rows). Inputs past the
  // end of the stream are 0; they follow every scored position of their row, so a causal model
  // scores the same with any id there.
  std::vector<LmBatch> batches;
  int64_t scored_tokens = 0;  // N - 1: a loss summed over the batches / this = the mean loss
  int64_t characters = 0;     // the stream's characters (TokenStream::characters)
  // Bits per character of a loss in nats summed over every scored token.
  double bits_per_character(double summed_loss) const;
};

// Throws std::invalid_argument for context or batch_size < 1 and for a stream of fewer than
// 2 tokens (nothing to score).
EvalWindows eval_windows(const TokenStream& stream, int64_t context, int64_t batch_size);

}  // namespace qkv::data
