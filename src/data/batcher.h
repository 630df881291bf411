// Token-based batching of tokenized sentence pairs for training an encoder-decoder.
//
// An epoch's plan: shuffle the pairs (seeded by seed and epoch), cut the shuffled list into
// windows of about `window_batches` batches' worth of tokens, sort each window by source then
// target length (stable), fill batches greedily while the padded size stays within the budget,
// then shuffle the order of all the epoch's batches. The padded size of a batch is
//   n_sentences * max over its pairs of max(src_len, tgt_len + 1)
// i.e. the larger of the two padded tensors src [B, S] and decoder input [B, T] (T counts the
// <bos>/<eos> added to the target). Plans depend only on (data, options, epoch), so a run that
// stores position() and calls seek() after a restart continues with exactly the same batches.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace qkv::data {

struct BatcherOptions {
  int64_t max_tokens = 4096;     // padded-size budget per batch (see above); >= max_len
  int32_t max_len = 256;         // widest tensor: src is cut to max_len, tgt to max_len - 1 tokens
  int64_t window_batches = 100;  // sort window, in batches' worth of tokens
  uint64_t seed = 1;
  bool shuffle = true;  // false: corpus order and batches in plan order (evaluation)
  int32_t pad_id = 0, bos_id = 2, eos_id = 3;  // the model's (Seq2SeqConfig)
};

// Where the next batch comes from; store it in a checkpoint to resume.
struct BatchPosition {
  int64_t epoch = 0;
  int64_t batch = 0;  // index into the epoch's plan
  bool operator==(const BatchPosition&) const = default;
};

struct Batch {
  Tensor src;                // i32 [B, S], padded with the pad id
  Tensor src_lengths;        // i32 [B]
  Tensor tgt_in;             // i32 [B, T]: <bos> tgt, padded (decoder input)
  Tensor tgt_out;            // i32 [B, T]: tgt <eos>, padded (what the decoder must predict)
  Tensor tgt_lengths;        // i32 [B]: tgt tokens + 1 (the real positions of tgt_in and tgt_out)
  int64_t n_tgt_tokens = 0;  // sum of tgt_lengths, i.e. target tokens including <eos>
  std::vector<int64_t> indices;  // row b holds pair indices[b] of the batcher's input
  BatchPosition position;        // where next() took it from
  int64_t size() const { return int64_t(indices.size()); }
  // The same batch with its tensors on `device`.
  Batch to(Device device) const;
};

// Cuts every source to max_len tokens; with eos >= 0 (models with Seq2SeqConfig::source_eos)
// to max_len - 1, then ends each non-empty one with eos. Returns how many were cut.
int64_t fit_sources(std::vector<std::vector<int32_t>>& sources, int64_t max_len, int32_t eos);

// src [B, S] and src_lengths [B] of `sources` (for translation); other tensors stay undefined
// and indices are 0..B-1.
Batch make_source_batch(const std::vector<std::vector<int32_t>>& sources, int32_t pad_id = 0);

class Batcher {
 public:
  // Pairs longer than the options allow are truncated (counted in truncated()); pairs with an
  // empty source are left out (counted in skipped_empty()). Throws std::invalid_argument for
  // inconsistent options, different pair counts, or no usable pair.
  Batcher(std::vector<std::vector<int32_t>> src, std::vector<std::vector<int32_t>> tgt,
          const BatcherOptions& options);

  int64_t pairs() const { return int64_t(usable_.size()); }
  int64_t truncated() const { return truncated_; }
  int64_t skipped_empty() const { return skipped_empty_; }

  // The batches of `epoch` as pair indices, in the order they are served.
  std::vector<std::vector<int64_t>> epoch_plan(int64_t epoch) const;
  int64_t batches_in_epoch(int64_t epoch);

  // The batch at position(); then moves on, into the next epoch after an epoch's last batch.
  Batch next();
  // Moves on past the batch at position() without building it (another rank's batch).
  void skip();
  BatchPosition position() const { return position_; }
  // Continues from `position`; throws std::invalid_argument when the epoch has no such batch.
  void seek(const BatchPosition& position);

  // The tensors for pairs `indices` (rows in that order).
  Batch make_batch(const std::vector<int64_t>& indices) const;

 private:
  const std::vector<std::vector<int64_t>>& plan(int64_t epoch);
  int64_t width(int64_t i) const;  // padded columns pair i needs: max(src_len, tgt_len + 1)

  BatcherOptions options_;
  std::vector<std::vector<int32_t>> src_, tgt_;
  std::vector<int64_t> usable_;  // pairs with a non-empty source, in corpus order
  int64_t truncated_ = 0, skipped_empty_ = 0;
  BatchPosition position_;
  int64_t plan_epoch_ = -1;  // epoch that plan_ holds
  std::vector<std::vector<int64_t>> plan_;
};

// Pairs and batches on standard error, plus a warning for truncated or skipped pairs.
void report_batcher(const std::string& name, Batcher& batcher);

}  // namespace qkv::data
