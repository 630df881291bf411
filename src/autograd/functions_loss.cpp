// Losses as differentiable functions.
#include "autograd/functions.h"

namespace qkv {

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

}  // namespace qkv
