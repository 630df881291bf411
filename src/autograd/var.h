// Var: a tensor that can take part in reverse-mode differentiation. Parameters are Vars that
// require a gradient; activations made by differentiable functions while a Tape records are
// Vars whose backward step sits on that tape.
#pragma once
#include <memory>
#include <string>

#include "tensor/tensor.h"

namespace qkv {

class Var {
 public:
  Var() = default;
  explicit Var(Tensor value, bool requires_grad = false);

  bool defined() const { return node_ != nullptr; }
  // What every copy of this handle shares (one per parameter, tied ones included).
  const void* id() const { return node_.get(); }
  const Tensor& value() const { return node_->value; }
  // For optimizers and weight loading: replaces or edits the value in place.
  Tensor& mutable_value() { return node_->value; }
  const Shape& shape() const { return node_->value.shape(); }
  bool requires_grad() const { return node_ && node_->requires_grad; }
  // Freezes (false) or unfreezes a parameter; a frozen one gets no gradient and no tape step
  // needs it. Var is a handle: every copy sees the change.
  void set_requires_grad(bool on) const { node_->requires_grad = on; }

  bool has_grad() const { return node_ && node_->grad.defined(); }
  // The gradient, allocated as zeros (shape and device of the value) on first use.
  // Var is a handle: a const Var still reaches its (shared) gradient.
  Tensor& grad() const;
  // Adds g (the value's shape) to the gradient. Where there is none yet, g becomes the gradient
  // without a copy or zeros: the caller hands g over and writes to it no more. Backward steps
  // hand over a fresh product, or their output's gradient, which nothing reads after the step
  // (so after backward() an intermediate Var's gradient may share its input's storage).
  void accumulate_grad(Tensor g) const;
  // Forgets the gradient (the next backward starts from zero).
  void clear_grad() const { node_->grad = Tensor(); }

 private:
  struct Node {
    Tensor value;
    Tensor grad;
    bool requires_grad = false;
  };
  std::shared_ptr<Node> node_;
};

}  // namespace qkv
