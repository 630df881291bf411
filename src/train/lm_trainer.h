// `qkv train-lm`: a decoder-only language model (nn::Gpt) trained to predict the next token on
// random windows of the training text, with the shared loop (train/loop.h).
#pragma once
#include <cstdint>

#include "train/lm_train_config.h"

namespace qkv::train {

// Trains (or resumes) the model in cfg.model_dir; returns the number of updates done over all
// runs. Throws std::invalid_argument / std::runtime_error naming a bad option or file.
int64_t train_lm(const LmTrainConfig& cfg);

}  // namespace qkv::train
