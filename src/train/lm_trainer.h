// `qkv train-lm`: a decoder-only language model (nn::Gpt) trained to predict the next token on
// random windows of the training text, with the shared loop (train/loop.h).
#pragma once
#include <cstdint>

#include "data/lm_windows.h"
#include "train/distillation.h"
#include "train/lm_train_config.h"

namespace qkv::train {

// Trains (or resumes) the model in cfg.model_dir; returns the number of updates done over all
// runs. Throws std::invalid_argument / std::runtime_error naming a bad option or file. With a
// distillation, each training batch's loss is distillation_loss against the teacher's logits
// [B * L, V] for the batch's inputs (rows in the order of targets.reshape({-1})); validation
// stays the student's own.
int64_t train_lm(const LmTrainConfig& cfg, const Distillation<data::LmBatch>* distill = nullptr);

}  // namespace qkv::train
