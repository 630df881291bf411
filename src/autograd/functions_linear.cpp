// Matrix products and elementwise arithmetic: forward op and backward step side by side.
#include "autograd/functions.h"
#include "ops/precision.h"

namespace qkv {

namespace {
// The gradient of `v` when it needs one, else an undefined tensor the ops skip.
Tensor grad_or_none(const Var& v) {
  return v.requires_grad() ? v.grad() : Tensor();
}

// linear's backward step from dy [..., out]. Where x has no gradient yet, dx = dy w is its
// gradient as computed, without zeros to add it to.
void linear_step(const Tensor& dy, const Var& x, const Var& w, const Var& bias) {
  Tensor dw = grad_or_none(w), db = bias.defined() ? grad_or_none(bias) : Tensor(), dx;
  if (x.requires_grad() && !x.has_grad()) {
    x.accumulate_grad(ops::linear_input_grad(dy, w.value()).reshape(x.shape()));
  } else {
    dx = grad_or_none(x);
  }
  ops::linear_backward(dy, x.value(), w.value(), dx, dw, db);
}
}  // namespace

Var matmul(const Var& a, const Var& b, bool trans_a, bool trans_b) {
  Var out(ops::matmul(a.value(), trans_a, b.value(), trans_b), needs_tape(a, b));
  if (!out.requires_grad()) return out;
  Tape::active()->record([a, b, out, trans_a, trans_b]() mutable {
    if (!out.has_grad()) return;
    const Tensor& dc = out.grad();
    // c = op(a) op(b): d op(a) = dc op(b)^T, d op(b) = op(a)^T dc.
    if (a.requires_grad()) {
      if (trans_a)
        ops::batched_gemm(b.value(), trans_b, dc, true, a.grad(), 1.f, 1.f);
      else
        ops::batched_gemm(dc, false, b.value(), !trans_b, a.grad(), 1.f, 1.f);
    }
    if (b.requires_grad()) {
      if (trans_b)
        ops::batched_gemm(dc, true, a.value(), trans_a, b.grad(), 1.f, 1.f);
      else
        ops::batched_gemm(a.value(), !trans_a, dc, false, b.grad(), 1.f, 1.f);
    }
  });
  return out;
}

Var linear(const Var& x, const Var& w, const Var& bias) {
  Tensor b = bias.defined() ? bias.value() : Tensor();
  bool track = bias.defined() ? needs_tape(x, w, bias) : needs_tape(x, w);
  Var out(ops::linear_forward(x.value(), w.value(), b), track);
  if (!track) return out;
  Tape::active()->record([x, w, bias, out]() mutable {
    if (out.has_grad()) linear_step(out.grad(), x, w, bias);
  });
  return out;
}

Var linear_in_f32(const Var& x, const Var& w) {
  Tensor y;
  {
    ops::AutocastScope f32(ops::MatmulPrecision::f32);
    y = ops::linear_forward(x.value(), w.value(), Tensor());
  }
  Var out(y, needs_tape(x, w));
  if (!out.requires_grad()) return out;
  Tape::active()->record([x, w, out]() mutable {
    if (!out.has_grad()) return;
    ops::AutocastScope f32(ops::MatmulPrecision::f32);
    linear_step(out.grad(), x, w, Var());
  });
  return out;
}

Var lora_linear(const Var& x, const Var& w, const Var& bias, const Var& x_lora, const Var& a,
                const Var& b, float scaling) {
  int64_t out = w.shape()[0], r = a.shape()[0];
  Tensor y = ops::linear_forward(x.value(), w.value(), bias.defined() ? bias.value() : Tensor());
  Tensor u = ops::linear_forward(x_lora.value(), a.value(), Tensor());  // [..., r]
  Tensor y2 = y.reshape({-1, out}), u2 = u.reshape({-1, r});
  ops::gemm(u2, false, b.value(), true, y2, scaling, 1.f);  // y += scaling u b^T
  bool track = needs_tape(x, w, bias, x_lora, a, b);
  Var result(y, track);
  if (!track) return result;
  Tape::active()->record([x, w, bias, x_lora, a, b, u, result, scaling]() mutable {
    if (!result.has_grad()) return;
    const Tensor& dy = result.grad();
    Tensor dx = grad_or_none(x), dw = grad_or_none(w);
    Tensor db = bias.defined() ? grad_or_none(bias) : Tensor();
    ops::linear_backward(dy, x.value(), w.value(), dx, dw, db);
    int64_t rows = u.numel() / u.shape().back();
    Tensor dy2 = dy.reshape({rows, -1}), u2 = u.reshape({rows, -1});
    if (b.requires_grad()) ops::gemm(dy2, true, u2, false, b.grad(), scaling, 1.f);  // [out, r]
    if (!a.requires_grad() && !x_lora.requires_grad()) return;
    Tensor du = Tensor::empty(u.shape(), u.dtype(), u.device());
    Tensor du2 = du.reshape({rows, -1});
    ops::gemm(dy2, false, b.value(), false, du2, scaling, 0.f);  // du = scaling dy b
    Tensor dx_lora = grad_or_none(x_lora), da = grad_or_none(a), none;
    ops::linear_backward(du, x_lora.value(), a.value(), dx_lora, da, none);
  });
  return result;
}

Var add(const Var& a, const Var& b) {
  Var out(ops::add(a.value(), b.value()), needs_tape(a, b));
  if (!out.requires_grad()) return out;
  Tape::active()->record([a, b, out]() mutable {
    if (!out.has_grad()) return;
    // An input with no gradient yet and out's shape takes out's gradient, read no more: a takes
    // it, b a copy when a needs one too (not one tensor: a later step may add to one only).
    const Tensor& dy = out.grad();
    if (b.requires_grad()) {
      if (!b.has_grad() && b.shape() == dy.shape())
        b.accumulate_grad(a.requires_grad() ? dy.clone() : dy);
      else
        ops::reduce_to(dy, b.grad());
    }
    if (a.requires_grad()) {
      if (!a.has_grad() && a.shape() == dy.shape())
        a.accumulate_grad(dy);
      else
        ops::reduce_to(dy, a.grad());
    }
  });
  return out;
}

Var mul(const Var& a, const Var& b) {
  Var out(ops::mul(a.value(), b.value()), needs_tape(a, b));
  if (!out.requires_grad()) return out;
  Tape::active()->record([a, b, out]() mutable {
    if (!out.has_grad()) return;
    Tensor da = grad_or_none(a), db = grad_or_none(b);
    ops::mul_backward(out.grad(), a.value(), b.value(), da, db);
  });
  return out;
}

Var scale(const Var& x, float s) {
  Var out(ops::scale(x.value(), s), needs_tape(x));
  if (!out.requires_grad()) return out;
  Tape::active()->record([x, out, s]() mutable {
    if (out.has_grad()) ops::axpy(s, out.grad(), x.grad());
  });
  return out;
}

Var sum(const Var& x) {
  Var out(ops::sum_all(x.value()), needs_tape(x));
  if (!out.requires_grad()) return out;
  Tape::active()->record([x, out]() mutable {
    if (!out.has_grad()) return;
    Tensor ones = Tensor::full(x.shape(), out.grad().item());
    ops::axpy(1.f, ones.to(x.value().device()), x.grad());
  });
  return out;
}

Var reshape(const Var& x, const Shape& shape) {
  Var out(x.value().reshape(shape), needs_tape(x));
  if (!out.requires_grad()) return out;
  Tape::active()->record([x, out]() mutable {
    if (out.has_grad()) x.accumulate_grad(out.grad().reshape(x.shape()));  // read no more
  });
  return out;
}

}  // namespace qkv
