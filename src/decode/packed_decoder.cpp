#include "decode/packed_decoder.h"

namespace qkv::decode {

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
