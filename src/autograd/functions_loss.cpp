// Losses as differentiable functions.
#include <stdexcept>

#include "autograd/functions.h"

namespace qkv {

namespace {

// 1 for the rows whose target is not ignore_index, else 0: f32 [N, 1] on `device`.
Tensor scored_rows(const Tensor& targets, int ignore_index, Device device) {
  Tensor host = targets.to(Device::cpu);
  Tensor mask = Tensor::zeros({host.numel(), 1});
  for (int64_t i = 0; i < host.numel(); ++i)
    mask.data<float>()[i] = host.data<int32_t>()[i] == ignore_index ? 0.f : 1.f;
  return mask.to(device);
}

}  // namespace

Var cross_entropy_sum(const Var& logits, const Tensor& targets, int ignore_index,
                      float label_smoothing) {
  Tensor lse;
  Tensor losses = ops::cross_entropy_forward(logits.value(), targets, ignore_index, label_smoothing,
                                             lse);  // [N], 0 where ignored
  Var out(ops::sum_all(losses), needs_tape(logits));
  if (!out.requires_grad()) return out;
  Tape::active()->record([logits, targets, ignore_index, label_smoothing, lse, out]() mutable {
    if (!out.has_grad()) return;
    Tensor dloss = Tensor::full({logits.shape()[0]}, out.grad().item());  // d sum / d loss_i
    ops::cross_entropy_backward(dloss.to(lse.device()), logits.value(), targets, ignore_index,
                                label_smoothing, lse, logits.grad());
  });
  return out;
}

Var distillation_kl_sum(const Var& logits, const Tensor& teacher, const Tensor& targets,
                        int ignore_index, float temperature) {
  if (teacher.shape() != logits.shape())
    throw std::invalid_argument("distillation: the teacher's logits " + shape_str(teacher.shape()) +
                                " differ from the student's " + shape_str(logits.shape()));
  float t = temperature;
  Tensor mask = scored_rows(targets, ignore_index, logits.value().device());  // [N, 1]
  Tensor teacher_t = ops::scale(teacher, 1.f / t);                            // [N, V]
  Tensor log_p_teacher = ops::log_softmax_forward(teacher_t);                 // [N, V]
  Tensor p_teacher = ops::mul(ops::softmax_forward(teacher_t), mask);         // 0 on ignored rows
  Tensor log_p_student = ops::log_softmax_forward(ops::scale(logits.value(), 1.f / t));
  Tensor log_ratio = ops::add(log_p_teacher, ops::scale(log_p_student, -1.f));
  Var out(ops::scale(ops::sum_all(ops::mul(p_teacher, log_ratio)), t * t), needs_tape(logits));
  if (!out.requires_grad()) return out;
  Tape::active()->record([logits, p_teacher, mask, t, out]() mutable {
    if (!out.has_grad()) return;
    // d/d logits = T (p_student - p_teacher) on scored rows.
    Tensor p_student = ops::mul(ops::softmax_forward(ops::scale(logits.value(), 1.f / t)), mask);
    Tensor diff = ops::add(p_student, ops::scale(p_teacher, -1.f));
    ops::axpy(t * out.grad().item(), diff, logits.grad());
  });
  return out;
}

}  // namespace qkv
