// `qkv train`: trains a Seq2Seq translation model on parallel corpora, resuming from the model
// directory's last complete checkpoint when there is one.
#pragma once
#include "data/batcher.h"
#include "nn/seq2seq.h"
#include "train/distillation.h"
#include "train/train_config.h"

namespace qkv::train {

// The summed label-smoothed cross-entropy of one batch (teacher forcing), recorded on the
// current tape when one is recording: the loss of every training step.
Var batch_loss(const nn::Seq2Seq& model, const data::Batch& batch, float smoothing,
               const nn::Context& ctx);

// Returns the number of updates done in total (over all runs). With `distill`, each batch's loss
// is distillation_loss against the teacher's logits [B * T, V] for it (word-level distillation).
int64_t train_seq2seq(const TrainConfig& config,
                      const Distillation<data::Batch>* distill = nullptr);

}  // namespace qkv::train
