#include "decode/packed_decoder.h"

namespace qkv::decode {

PackedLinear::PackedLinear(const Tensor& weight, const Tensor& bias)
    : weight(weight.device() == Device::cpu ? ops::pack_linear_weight(weight) : weight),
      bias(bias),
      out(weight.size(0)) {}

PackedLinear::PackedLinear(const std::vector<const nn::Linear*>& layers) {
  std::vector<Tensor> weights, biases;
  for (const nn::Linear* l : layers) {
    weights.push_back(l->weight.value());
    const Tensor& w = l->weight.value();
    biases.push_back(l->bias.defined() ? l->bias.value()
                                       : Tensor::zeros({w.size(0)}, DType::f32, w.device()));
  }
  *this = PackedLinear(ops::concat(weights, 0), ops::concat(biases, 0));
}

Var PackedLinear::operator()(const Var& x) const {
  if (weight.device() != Device::cpu) return Var(ops::linear_forward(x.value(), weight, bias));
  return Var(ops::linear_packed_forward(x.value(), weight, out, bias));
}

PackedDecoder::PackedDecoder(const nn::Seq2Seq& model)
    : model_(model), output_(model.output_weight().value(), model.output_bias().value()) {
  for (const auto& layer : model.decoder_layers()) {
    const auto &self = layer.self_attn, &cross = layer.encoder_attn;
    layers_.push_back({PackedLinear({&self.q_proj, &self.k_proj, &self.v_proj}),
                       PackedLinear({&self.out_proj}), PackedLinear({&cross.q_proj}),
                       PackedLinear({&cross.out_proj}), PackedLinear({&layer.ffn.fc1}),
                       PackedLinear({&layer.ffn.fc2})});
  }
}

}  // namespace qkv::decode
