// `qkv distill`: a student trained from a teacher's model directory (train/distillation.h), one
// function per family. Each reads the teacher, checks that the pair can be distilled (a named
// error otherwise), trains the student in config.model_dir with its family's trainer, resuming as
// that trainer does, and returns the number of updates done over all runs.
#pragma once
#include <cstdint>

#include "train/distillation.h"
#include "train/lm_train_config.h"
#include "train/train_config.h"
#include "train/vit_train_config.h"

namespace qkv::train {

// A translation student: seq (the teacher's translations, train/seq_distillation.h) or word.
int64_t distill_seq2seq(const TrainConfig& student, const DistillOptions& options);
// A GPT student: word, on the student's training text.
int64_t distill_lm(const LmTrainConfig& student, const DistillOptions& options);
// A ViT student: logits (soft targets), on the student's training images.
int64_t distill_vit(const ViTTrainConfig& student, const DistillOptions& options);

}  // namespace qkv::train
