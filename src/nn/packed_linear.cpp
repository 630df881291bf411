#include "nn/packed_linear.h"

namespace qkv::nn {

namespace {
// The LoRA updates of `layers` as one: A [R, in] stacks each update's A; B [out, R] holds
// each layer's scaled B in its own rows and its update's columns.
void stack_lora(const std::vector<const Linear*>& layers, Tensor& a, Tensor& b) {
  std::vector<Tensor> as;
  int64_t rank = 0;
  for (const Linear* l : layers)
    if (l->lora) as.push_back(l->lora->a.value()), rank += l->lora->a.shape()[0];
  if (as.empty()) return;
  Device device = as[0].device();
  std::vector<Tensor> row_blocks;
  int64_t before = 0;
  for (const Linear* l : layers) {
    int64_t out = l->weight.shape()[0];
    if (!l->lora) {
      row_blocks.push_back(Tensor::zeros({out, rank}, DType::f32, device));
      continue;
    }
    int64_t r = l->lora->a.shape()[0];
    std::vector<Tensor> columns;
    if (before > 0) columns.push_back(Tensor::zeros({out, before}, DType::f32, device));
    columns.push_back(ops::scale(l->lora->b.value(), l->lora->scaling));
    if (rank - before - r > 0)
      columns.push_back(Tensor::zeros({out, rank - before - r}, DType::f32, device));
    row_blocks.push_back(ops::concat(columns, 1));
    before += r;
  }
  a = ops::concat(as, 0);
  b = ops::concat(row_blocks, 0);
}
}  // namespace

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
  stack_lora(layers, lora_a, lora_b);
}

Var PackedLinear::operator()(const Var& x) const {
  Tensor y = weight.device() != Device::cpu
                 ? ops::linear_forward(x.value(), weight, bias)
                 : ops::linear_packed_forward(x.value(), weight, out, bias);
  if (!lora_a.defined()) return Var(y);
  Tensor update =
      ops::linear_forward(ops::linear_forward(x.value(), lora_a, Tensor()), lora_b, Tensor());
  return Var(ops::add(y, update));
}

}  // namespace qkv::nn
