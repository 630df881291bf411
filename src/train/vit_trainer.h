// `qkv train-vit`: trains a ViT image classifier, resuming from the model directory's last
// complete checkpoint when there is one. Shares the training loop (train/loop.h) with the
// translation trainer.
#pragma once
#include "data/image_loader.h"
#include "train/distillation.h"
#include "train/vit_train_config.h"

namespace qkv::train {

// Returns the number of updates done in total (over all runs). With a distillation, each
// training batch's loss is distillation_loss against the teacher's logits [B, classes] for the
// batch as the student sees it (augmented); validation stays the student's own.
int64_t train_vit(const ViTTrainConfig& config,
                  const Distillation<data::ImageBatch>* distill = nullptr);

}  // namespace qkv::train
