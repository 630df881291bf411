// Embedding, LayerNorm, RMSNorm, rotary position embeddings, softmax, activations and dropout:
// forward op and backward step side by side. Each backward step keeps only what its kernel needs
// (inputs, saved statistics, masks).
#include "autograd/functions.h"

namespace qkv {

namespace {
// The gradient of `v` when it needs one, else an undefined tensor the ops skip.
Tensor grad_or_none(const Var& v) {
  return v.requires_grad() ? v.grad() : Tensor();
}
}  // namespace

Var embedding(const Tensor& ids, const Var& table, float scale) {
  Var out(ops::embedding_forward(ids, table.value(), scale), needs_tape(table));  // [..., dim]
  if (!out.requires_grad()) return out;
  Tape::active()->record([ids, table, out, scale]() mutable {
    if (out.has_grad()) ops::embedding_backward(out.grad(), ids, table.grad(), scale);
  });
  return out;
}

Var layer_norm(const Var& x, const Var& gamma, const Var& beta, float eps) {
  Tensor mean, rstd;  // [rows]
  Var out(ops::layer_norm_forward(x.value(), gamma.value(), beta.value(), eps, mean, rstd),
          needs_tape(x, gamma, beta));
  if (!out.requires_grad()) return out;
  Tape::active()->record([x, gamma, beta, out, mean, rstd]() mutable {
    if (!out.has_grad()) return;
    Tensor dx = grad_or_none(x), dgamma = grad_or_none(gamma), dbeta = grad_or_none(beta);
    ops::layer_norm_backward(out.grad(), x.value(), gamma.value(), mean, rstd, dx, dgamma, dbeta);
  });
  return out;
}

Var rms_norm(const Var& x, const Var& gamma, float eps) {
  Tensor rstd;  // [rows]
  Var out(ops::rms_norm_forward(x.value(), gamma.value(), eps, rstd), needs_tape(x, gamma));
  if (!out.requires_grad()) return out;
  Tape::active()->record([x, gamma, out, rstd]() mutable {
    if (!out.has_grad()) return;
    Tensor dx = grad_or_none(x), dgamma = grad_or_none(gamma);
    ops::rms_norm_backward(out.grad(), x.value(), gamma.value(), rstd, dx, dgamma);
  });
  return out;
}

Var rope(const Var& x, const Tensor& positions, const ops::RopeFrequencies& freq) {
  Var out(ops::rope_forward(x.value(), positions, freq), needs_tape(x));  // [B, H, L, D]
  if (!out.requires_grad()) return out;
  Tape::active()->record([x, positions, freq, out]() mutable {
    if (out.has_grad()) ops::rope_backward(out.grad(), positions, freq, x.grad());
  });
  return out;
}

Var softmax(const Var& x) {
  Var out(ops::softmax_forward(x.value()), needs_tape(x));
  if (!out.requires_grad()) return out;
  Tape::active()->record([x, out]() mutable {
    if (out.has_grad()) ops::softmax_backward(out.grad(), out.value(), x.grad());
  });
  return out;
}

Var activation(ops::Activation act, const Var& x) {
  Var out(ops::activation_forward(act, x.value()), needs_tape(x));
  if (!out.requires_grad()) return out;
  Tape::active()->record([act, x, out]() mutable {
    if (out.has_grad()) ops::activation_backward(act, out.grad(), x.value(), x.grad());
  });
  return out;
}

Var dropout(const Var& x, float p, Rng& rng) {
  if (p == 0.f) return x;
  Tensor mask;  // u8, the shape of x
  Var out(ops::dropout_forward(x.value(), p, rng, mask), needs_tape(x));
  if (!out.requires_grad()) return out;
  Tape::active()->record([x, out, mask, p]() mutable {
    if (out.has_grad()) ops::dropout_backward(out.grad(), mask, p, x.grad());
  });
  return out;
}

Var logsumexp(const Var& x) {
  Var out(ops::logsumexp_forward(x.value()), needs_tape(x));  // [...]
  if (!out.requires_grad()) return out;
  Tape::active()->record([x, out]() mutable {
    if (out.has_grad()) ops::logsumexp_backward(out.grad(), x.value(), out.value(), x.grad());
  });
  return out;
}

}  // namespace qkv
