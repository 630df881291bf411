#include "nn/packed_linear.h"

#include <stdexcept>

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

PackedLinear::PackedLinear(const Tensor& w, const Tensor& bias, ops::ComputeType type)
    : bias(bias), out(w.size(0)) {
  if (w.device() == Device::cpu) {
    packed = ops::pack_linear(w, type);
    return;
  }
  if (type != ops::ComputeType::f32)
    throw std::invalid_argument(std::string("compute type ") + ops::compute_type_name(type) +
                                " runs on the cpu only (cuda computes in f32)");
  weight = w;
}

PackedLinear::PackedLinear(const std::vector<const Linear*>& layers, ops::ComputeType type) {
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
  *this = PackedLinear(ops::concat(weights, 0), any_bias ? ops::concat(biases, 0) : Tensor(), type);
  stack_lora(layers, lora_a, lora_b);
}

Var PackedLinear::operator()(const Var& x) const {
  Tensor y = weight.defined() ? ops::linear_forward(x.value(), weight, bias)
                              : ops::linear_forward(x.value(), packed, bias);
  if (!lora_a.defined()) return Var(y);
  Tensor update =
      ops::linear_forward(ops::linear_forward(x.value(), lora_a, Tensor()), lora_b, Tensor());
  return Var(ops::add(y, update));
}

void set_compute_type(const LinearList& linears, ops::ComputeType type) {
  for (const auto& [name, linear] : linears)
    linear->packed = type == ops::ComputeType::f32 ? nullptr
                                                   : std::make_shared<const PackedLinear>(
                                                         std::vector<const Linear*>{linear}, type);
}

}  // namespace qkv::nn
