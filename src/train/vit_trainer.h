// `qkv train-vit`: trains a ViT image classifier, resuming from the model directory's last
// complete checkpoint when there is one. Shares the training loop (train/loop.h) with the
// translation trainer.
#pragma once
#include "train/vit_train_config.h"

namespace qkv::train {

// Returns the number of updates done in total (over all runs).
int64_t train_vit(const ViTTrainConfig& config);

}  // namespace qkv::train
