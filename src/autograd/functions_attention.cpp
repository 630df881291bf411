// Attention as a differentiable function: the forward keeps what its implementation needs
// (probabilities or row log-sum-exp) for the backward step.
#include "autograd/functions.h"

namespace qkv {

Var attention(const Var& q, const Var& k, const Var& v, const ops::AttentionMask& mask, float scale,
              ops::AttentionImpl impl) {
  bool track = needs_tape(q, k, v);
  ops::AttentionSaved saved;
  Var out(ops::attention_forward(q.value(), k.value(), v.value(), mask, scale,
                                 track ? &saved : nullptr, impl),
          track);
  if (!track) return out;
  Tape::active()->record([q, k, v, out, mask, scale, saved]() mutable {
    if (!out.has_grad()) return;
    Tensor dq = q.requires_grad() ? q.grad() : Tensor();
    Tensor dk = k.requires_grad() ? k.grad() : Tensor();
    Tensor dv = v.requires_grad() ? v.grad() : Tensor();
    ops::attention_backward(out.grad(), q.value(), k.value(), v.value(), out.value(), mask, scale,
                            saved, dq, dk, dv);
  });
  return out;
}

}  // namespace qkv
