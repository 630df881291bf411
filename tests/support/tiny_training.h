// The tiny Seq2Seq and the batch that the cuda training tests train on both devices: random ids
// (never the special ids 0-3), three sentences, the last target row padded (id 0, the pad id)
// after 4 tokens. And its training steps under bf16 autocast against f32.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "autograd/tape.h"
#include "data/batcher.h"
#include "nn/seq2seq.h"
#include "ops/precision.h"
#include "optim/optimizer.h"
#include "support/cuda_compare.h"
#include "support/gradient_compare.h"
#include "train/trainer.h"

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

// Three Adam steps of the tiny Seq2Seq from the same weights, batch and dropout masks: in f32 on
// the CPU, and under bf16 autocast (forward and backward, as the trainers) on `device`. The
// first step's gradients are compared per tensor, relative to each one's own norm: bf16 keeps 8
// significant bits (unit roundoff 2^-9 = 2e-3) and every matmul operand is rounded, forward and
// backward, and in this post-norm model with head dim 16 the LayerNorm and softmax backward
// passes subtract nearly equal rounded terms. Measured (cuda, emulated backend): 1.7e-3
// (final_logits_bias) near the loss, a median of 5.5e-2, at most 0.143 (decoder layer 0's
// cross-attention q_proj.weight); the key biases, zero in exact arithmetic, 2e-3 of their
// weights' gradient. So 0.25 per tensor: loose, but a gradient that is a quarter off, zero or of
// the wrong sign fails, which the one gradient norm over all tensors (dominated by the
// embedding) let pass. Losses: measured at most 1.6e-3 relative, tolerance 5e-3, and not equal
// (bf16 was used); gradient norms 2.3e-2, tolerance 5e-2. The master weights stay f32.
inline void expect_bf16_steps_like_f32(Device device) {
  constexpr double kGradTol = 0.25, kLossTol = 5e-3, kGradNormTol = 5e-2;
  nn::Seq2SeqConfig config = tiny_training_config();
  nn::Seq2Seq f32_model(config), bf16_model(config);
  Rng init_a(5), init_b(5);
  f32_model.init(init_a);
  bf16_model.init(init_b);
  bf16_model.to(device);
  nn::ParamList f32_params = f32_model.params(), bf16_params = bf16_model.params();
  Rng data(6);
  data::Batch batch = tiny_training_batch(data, config.vocab_size);
  data::Batch batch_d = batch.to(device);
  optim::Adam adam_f32(f32_params, {0.9f, 0.98f, 1e-9f, 0.f});
  optim::Adam adam_bf16(bf16_params, {0.9f, 0.98f, 1e-9f, 0.f});
  Rng drop_f32(7), drop_bf16(7);  // the same dropout masks on both devices
  nn::Context ctx_f32{true, config.dropout, &drop_f32}, ctx_bf16{true, config.dropout, &drop_bf16};
  for (int step = 0; step < 3; ++step) {
    Tape tape_f32, tape_bf16;
    Var loss_f32, loss_bf16;
    {
      Recording rec(tape_f32);
      loss_f32 = train::batch_loss(f32_model, batch, 0.1f, ctx_f32);
    }
    tape_f32.backward(loss_f32);
    {
      ops::AutocastScope scope(ops::MatmulPrecision::bf16);
      {
        Recording rec(tape_bf16);
        loss_bf16 = train::batch_loss(bf16_model, batch_d, 0.1f, ctx_bf16);
      }
      tape_bf16.backward(loss_bf16);
    }
    double want = loss_f32.value().item(), got = loss_bf16.value().item();
    EXPECT_NEAR(got, want, kLossTol * std::fabs(want)) << "loss at step " << step;
    EXPECT_NE(got, want) << "loss at step " << step << ": bf16 changed nothing";
    for (size_t i = 0; i < f32_params.size() && step == 0; ++i) {
      const std::string& name = f32_params[i].first;
      double floor = 1e-30;
      if (name.ends_with("k_proj.bias"))  // noise, beside the key weights' gradient
        floor = tensor_norm(grad_of(f32_params, name.substr(0, name.size() - 4) + "weight"));
      EXPECT_TRUE(gradient_close(name, bf16_params[i].second.grad(), f32_params[i].second.grad(),
                                 kGradTol, floor));
    }
    optim::UpdateResult rf =
        optim::clipped_update(adam_f32, f32_params, want, batch.n_tgt_tokens, 1e-3f, 1.f);
    optim::UpdateResult rb =
        optim::clipped_update(adam_bf16, bf16_params, got, batch.n_tgt_tokens, 1e-3f, 1.f);
    EXPECT_TRUE(rf.applied && rb.applied);
    EXPECT_NEAR(rb.grad_norm, rf.grad_norm, kGradNormTol * rf.grad_norm)
        << "gradient norm, step " << step;
  }
  for (const auto& [name, p] : bf16_params)
    EXPECT_EQ(p.value().dtype(), DType::f32) << name << ": master weights stay f32";
}

}  // namespace qkv::test
