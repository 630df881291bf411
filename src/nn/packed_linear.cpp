#include "nn/packed_linear.h"

namespace qkv::nn {

PackedLinear::PackedLinear(const Tensor& weight, const Tensor& bias)
    : weight(weight.device() == Device::cpu ? ops::pack_linear_weight(weight) : weight),
      bias(bias),
      out(weight.size(0)) {}

PackedLinear::PackedLinear(const std::vector<const Linear*>& layers) {
  std::vector<Tensor> weights, biases;
  bool any_bias = false;
  for (const Linear* l : layers) any_bias = any_bias || l->bias.defined();
  for (const Linear* l : layers) {
    const Tensor& w = l->weight.value();
    weights.push_back(w);
    if (any_bias)
      biases.push_back(l->bias.defined() ? l->bias.value()
                                         : Tensor::zeros({w.size(0)}, DType::f32, w.device()));
  }
  *this = PackedLinear(ops::concat(weights, 0), any_bias ? ops::concat(biases, 0) : Tensor());
}

Var PackedLinear::operator()(const Var& x) const {
  if (weight.device() != Device::cpu) return Var(ops::linear_forward(x.value(), weight, bias));
  return Var(ops::linear_packed_forward(x.value(), weight, out, bias));
}

}  // namespace qkv::nn
