// `qkv train`: trains a Seq2Seq translation model on parallel corpora, resuming from the model
// directory's last complete checkpoint when there is one.
#pragma once
#include "train/train_config.h"

namespace qkv::train {

// Returns the number of updates done in total (over all runs).
int64_t train_seq2seq(const TrainConfig& config);

}  // namespace qkv::train
