// Incremental decoding of a Seq2Seq model: one target position per step for N rows at once.
// Self-attention keys and values are cached ([N, H, capacity, Dh] per layer, written in place);
// the encoder memory is projected to keys and values once. Records no tape. After the first
// step, steps draw every tensor from the caching allocator, so the system allocator is not
// called again in the loop.
#pragma once
#include <vector>

#include "nn/seq2seq.h"

namespace qkv::decode {

class IncrementalDecoder {
 public:
  // memory [N, S, d] and src_lengths i32 [N] from Seq2Seq::encode; capacity: most steps.
  IncrementalDecoder(const nn::Seq2Seq& model, const Var& memory, const Tensor& src_lengths,
                     int64_t capacity);
  // tokens i32 [N] at position position() -> logits [N, V]; then position() grows by one.
  Tensor step(const Tensor& tokens);
  // Keeps rows `index` (i32 [M], values in [0, N)) in that order, e.g. to follow beams.
  void reorder(const Tensor& index);
  int64_t position() const { return pos_; }
  int64_t rows() const { return src_lengths_.size(0); }

 private:
  struct LayerCache {
    Tensor self_k, self_v;  // [N, H, capacity, Dh]
    Tensor mem_k, mem_v;    // [N, H, S, Dh]
  };
  Var self_attention(const nn::MultiHeadAttention& attn, const Var& x, LayerCache& cache);
  Var cross_attention(const nn::MultiHeadAttention& attn, const Var& x, const LayerCache& cache);

  const nn::Seq2Seq& model_;
  nn::Context ctx_;
  std::vector<LayerCache> layers_;
  Tensor src_lengths_;   // i32 [N]
  Tensor self_lengths_;  // i32 [N], position + 1 during a step
  int64_t capacity_, pos_ = 0;
};

}  // namespace qkv::decode
