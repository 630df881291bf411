// Incremental decoding of a Seq2Seq model: one target position per step for N rows at once.
// Self-attention keys and values are cached ([N, H, capacity, Dh] per layer): at step t, row r
// writes position t of cache row r, and never moves it. A row's history is a row of slots
// ([N, capacity]: which cache row holds each position), so beams that continue another row's
// history copy its slots, not its keys and values. The encoder memory is projected to keys and
// values once, per sentence ([B, H, S, Dh]): the `beam` rows of a sentence share them. Records
// no tape. After the first step, steps draw every tensor from the caching allocator, so the
// system allocator is not called again in the loop.
#pragma once
#include <vector>

#include "decode/packed_decoder.h"

namespace qkv::decode {

class IncrementalDecoder {
 public:
  // memory [B, S, d] and src_lengths i32 [B] from weights.model().encode; N = B * beam rows,
  // row r continues sentence r / beam; capacity: most steps. `weights` must outlive this.
  IncrementalDecoder(const PackedDecoder& weights, const Var& memory, const Tensor& src_lengths,
                     int64_t capacity, int64_t beam = 1);
  // tokens i32 [N] (on any device) at position position() -> logits [N, V] on the model's
  // device; then position() grows by one.
  Tensor step(const Tensor& tokens);
  // Keeps rows `index` (i32 [M], values in [0, N), on the cpu) in that order, e.g. to follow
  // beams. When sentences leave, `sentences` (i32 [M / beam], cpu) are those that stay, in
  // order, and rows j * beam .. j * beam + beam - 1 of `index` must belong to the j-th of them.
  void reorder(const Tensor& index, const Tensor& sentences = Tensor());
  int64_t position() const { return pos_; }
  int64_t rows() const { return slots_.size(0); }

 private:
  struct LayerCache {
    Tensor self_k, self_v;  // [N0, H, capacity, Dh] for the first step's N0 rows
    Tensor mem_k, mem_v;    // [B, H, S, Dh]
  };
  Var self_attention(const PackedDecoder::Layer& w, const Var& x, LayerCache& cache);
  Var cross_attention(const PackedDecoder::Layer& w, const Var& x, const LayerCache& cache);

  const PackedDecoder& weights_;
  const nn::Seq2Seq& model_;
  nn::Context ctx_;
  std::vector<LayerCache> layers_;
  Tensor src_lengths_;  // i32 [B], on the model's device
  Tensor slots_;        // i32 [N, capacity] on the cpu: the cache row of each row's positions
  int64_t capacity_, beam_, pos_ = 0;
};

}  // namespace qkv::decode
