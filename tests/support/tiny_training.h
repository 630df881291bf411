// The tiny Seq2Seq and the batch that the cuda training tests train on both devices: random ids
// (never the special ids 0-3), three sentences, the last target row padded (id 0, the pad id)
// after 4 tokens.
#pragma once
#include "data/batcher.h"
#include "nn/seq2seq.h"
#include "support/cuda_compare.h"

namespace qkv::test {

inline nn::Seq2SeqConfig tiny_training_config() {
  nn::Seq2SeqConfig c;
  c.vocab_size = 53;
  c.d_model = 32;
  c.heads = 2;
  c.d_ff = 56;
  c.encoder_layers = 2;
  c.decoder_layers = 2;
  c.dropout = 0.1f;
  c.max_positions = 64;
  return c;
}

inline data::Batch tiny_training_batch(Rng& rng, int64_t vocab) {
  const int64_t batch = 3, s = 9, t = 6;
  data::Batch b;
  b.src = random_ids({batch, s}, rng, 4, int(vocab));  // [B, S]
  b.src_lengths = Tensor::from_vector(std::vector<int32_t>{9, 5, 2}, {batch});
  b.tgt_in = random_ids({batch, t}, rng, 4, int(vocab));                     // [B, T]
  b.tgt_out = random_ids({batch, t}, rng, 4, int(vocab));                    // [B, T]
  for (int64_t j = 4; j < t; ++j) b.tgt_out.data<int32_t>()[2 * t + j] = 0;  // padding
  b.n_tgt_tokens = batch * t - 2;
  return b;
}

}  // namespace qkv::test
