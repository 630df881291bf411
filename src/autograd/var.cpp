#include "autograd/var.h"

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

}  // namespace qkv
