#include "train/distillation.h"

#include <cmath>
#include <stdexcept>

namespace qkv::train {

Var distillation_loss(const Var& logits, const Tensor& teacher, const Tensor& targets,
                      int ignore_index, float label_smoothing, const DistillationWeights& weights) {
  Var kl = distillation_kl_sum(logits, teacher, targets, ignore_index, weights.temperature);
  if (weights.kd_weight == 1.f) return kl;
  Var ce = cross_entropy_sum(logits, targets, ignore_index, label_smoothing);
  return add(scale(kl, weights.kd_weight), scale(ce, 1.f - weights.kd_weight));
}

void DistillOptions::bind(Options& o) {
  o.add("teacher", teacher, "distill: the teacher's model directory");
  o.add("teacher-checkpoint", teacher_checkpoint, "distill: the teacher's weights, best or last");
  o.add("method", method,
        "distill: seq (default) or word for translation, word for GPT, logits for ViT");
  o.add("teacher-beam", teacher_beam, "distill, seq: the teacher's beam size");
  o.add("teacher-batch-tokens", teacher_batch_tokens,
        "distill, seq: source subwords per batch of the teacher");
  o.add("teacher-compute-type", teacher_compute_type,
        "distill: the teacher's products, f32, bf16 or int8 (default: its directory's; a "
        "quantized teacher's is int8)");
  o.add("mix-references", mix_references,
        "distill, seq: train on the references as well as on the teacher's translations");
  o.add("temperature", weights.temperature,
        "distill, word and logits: the softmax temperature of teacher and student");
  o.add("kd-weight", weights.kd_weight,
        "distill, word and logits: the KL term's weight; the cross-entropy with the references "
        "gets 1 - kd-weight");
}

std::string DistillOptions::method_for(model_dir::Family family) const {
  if (!method.empty()) return method;
  switch (family) {
    case model_dir::Family::seq2seq:
      return "seq";
    case model_dir::Family::gpt:
      return "word";
    case model_dir::Family::vit:
      return "logits";
  }
  return method;
}

void DistillOptions::validate(model_dir::Family family) const {
  auto bad = [](const std::string& what) { throw std::invalid_argument(what); };
  if (teacher.empty()) bad("distill: --teacher (the teacher's model directory) is required");
  model_dir::check_which(teacher_checkpoint);
  std::string m = method_for(family);
  bool known = family == model_dir::Family::seq2seq ? (m == "seq" || m == "word")
               : family == model_dir::Family::gpt   ? m == "word"
                                                    : m == "logits";
  if (!known)
    bad("method: '" + m + "' is not a distillation method for a " + model_dir::family_name(family) +
        " teacher (translation: seq or word; gpt: word; vit: logits)");
  if (teacher_beam < 1) bad("teacher-beam: must be at least 1");
  if (teacher_batch_tokens < 1) bad("teacher-batch-tokens: must be at least 1");
  if (!(weights.temperature > 0) || !std::isfinite(weights.temperature))
    bad("temperature: must be a positive number");
  if (!(weights.kd_weight > 0 && weights.kd_weight <= 1)) bad("kd-weight: must be in (0, 1]");
}

void DistillOptions::check_teacher_family(model_dir::Family family,
                                          const std::string& student) const {
  model_dir::Family found = model_dir::family(teacher);
  if (found != family)
    throw std::runtime_error("the teacher " + teacher + " is a " + model_dir::family_name(found) +
                             " model; a " + student + " student needs a " + student + " teacher");
}

}  // namespace qkv::train
