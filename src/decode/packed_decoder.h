// A Seq2Seq decoder's linear weights packed once for few-row products in a compute type:
// packing costs about as much as a decoding step of one sentence, so a Translator packs once
// per model and every search reuses the result. Holds a reference to the model, which must
// outlive it and not change its weights meanwhile.
#pragma once
#include <vector>

#include "nn/packed_linear.h"
#include "nn/seq2seq.h"

namespace qkv::decode {

using nn::PackedLinear;

class PackedDecoder {
 public:
  struct Layer {
    PackedLinear self_qkv, self_out, cross_q, cross_out;
    PackedLinear fc1, fc2;  // dense layers
    nn::PackedMoe moe;      // MoE layers: the experts'
  };
  // Every product in `type`, the output projection (hidden -> logits) included: in int8 it is
  // about a fifth of a greedy step's time at batch 32 saved, with test BLEU unchanged (README).
  explicit PackedDecoder(const nn::Seq2Seq& model, ops::ComputeType type = ops::ComputeType::f32);
  const nn::Seq2Seq& model() const { return model_; }
  const Layer& layer(size_t i) const { return layers_[i]; }
  const PackedLinear& output() const { return output_; }  // hidden -> logits

 private:
  const nn::Seq2Seq& model_;
  std::vector<Layer> layers_;
  PackedLinear output_;
};

}  // namespace qkv::decode
