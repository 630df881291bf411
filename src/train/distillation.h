// Knowledge distillation: a student trained against a teacher's outputs.
//   - word level (Kim & Rush 2016) and soft targets (Hinton et al. 2015): at each target token or
//     image, the KL divergence from the teacher's distribution at a temperature, weighed against
//     the label-smoothed cross-entropy with the references. The trainers take a Distillation
//     (train_seq2seq, train_lm, train_vit) and run the teacher beside the student, forward only.
//   - sequence level (Kim & Rush 2016): the student trains on the teacher's beam-search
//     translations of the training sources (train/seq_distillation.h), with the ordinary trainer.
// `qkv distill` (cli/cmd_distill.cpp) reads DistillOptions and runs one of them.
#pragma once
#include <functional>
#include <string>

#include "autograd/functions.h"
#include "config/options.h"
#include "model_dir/model_dir.h"

namespace qkv::train {

struct DistillationWeights {
  float temperature = 1.f;
  float kd_weight = 0.5f;  // of the KL term; the cross-entropy with the references gets the rest
};

// kd_weight * distillation_kl_sum(logits, teacher, ...) + (1 - kd_weight) * the label-smoothed
// cross_entropy_sum(logits, targets, ...): logits and teacher [N, V], targets i32 [N]; [1].
Var distillation_loss(const Var& logits, const Tensor& teacher, const Tensor& targets,
                      int ignore_index, float label_smoothing, const DistillationWeights& weights);

// What a trainer needs to learn from a teacher: the teacher's logits for a batch, rows in the
// order of the student's (computed without a tape, on the student's device), and the weights.
template <class Batch>
struct Distillation {
  std::function<Tensor(const Batch&)> teacher_logits;
  DistillationWeights weights;
};

// The options of `qkv distill` besides the student's training options (same keys on the command
// line and in the YAML config).
struct DistillOptions {
  std::string teacher;                      // the teacher's model directory
  std::string teacher_checkpoint = "best";  // its weights: best or last
  // seq or word (translation), word (GPT), logits (ViT); "" takes the family's first.
  std::string method;
  int64_t teacher_beam = 5;             // seq: the teacher's beam size
  int64_t teacher_batch_tokens = 4096;  // seq: source subwords per teacher batch
  // The teacher's products (ops/compute_type.h): f32, bf16 or int8; "": its directory's own.
  std::string teacher_compute_type;
  bool mix_references = false;  // seq: train on the references too
  DistillationWeights weights;  // word, logits

  void bind(Options& options);
  // The method a teacher of `family` runs: the one asked for, or the family's default.
  std::string method_for(model_dir::Family family) const;
  // Throws std::invalid_argument naming the first option with an impossible value, or a method
  // the family has not.
  void validate(model_dir::Family family) const;
  // Throws std::runtime_error naming the teacher unless it is a model directory of `family`
  // (`student` names the family in the message: "translation", "GPT", "ViT").
  void check_teacher_family(model_dir::Family family, const std::string& student) const;
};

}  // namespace qkv::train
