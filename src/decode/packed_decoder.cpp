#include "decode/packed_decoder.h"

namespace qkv::decode {

PackedDecoder::PackedDecoder(const nn::Seq2Seq& model, ops::ComputeType type)
    : model_(model), output_(model.output_weight().value(), model.output_bias().value(), type) {
  for (const auto& layer : model.decoder_layers()) {
    const auto &self = layer.self_attn, &cross = layer.encoder_attn;
    Layer l;
    l.self_qkv = PackedLinear({&self.q_proj, &self.k_proj, &self.v_proj}, type);
    l.self_out = PackedLinear({&self.out_proj}, type);
    l.cross_q = PackedLinear({&cross.q_proj}, type);
    l.cross_out = PackedLinear({&cross.out_proj}, type);
    if (layer.is_moe()) {
      l.moe = layer.moe.pack(type);
    } else {
      l.fc1 = PackedLinear({&layer.ffn.fc1}, type), l.fc2 = PackedLinear({&layer.ffn.fc2}, type);
    }
    layers_.push_back(std::move(l));
  }
}

}  // namespace qkv::decode
