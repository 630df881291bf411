#include "autograd/var.h"

#include <stdexcept>

#include "ops/ops.h"

namespace qkv {

Var::Var(Tensor value, bool requires_grad) : node_(std::make_shared<Node>()) {
  node_->value = std::move(value);
  node_->requires_grad = requires_grad;
}

Tensor& Var::grad() const {
  if (!node_->grad.defined())
    node_->grad = Tensor::zeros(node_->value.shape(), node_->value.dtype(), node_->value.device());
  return node_->grad;
}

void Var::accumulate_grad(Tensor g) const {
  if (g.shape() != shape() || g.dtype() != value().dtype() || g.device() != value().device())
    throw std::logic_error("Var::accumulate_grad: gradient " + shape_str(g.shape()) +
                           " for a value " + shape_str(shape()) + " (or another dtype or device)");
  if (node_->grad.defined())
    ops::axpy(1.f, g, node_->grad);
  else
    node_->grad = std::move(g);
}

}  // namespace qkv
