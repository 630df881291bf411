// A Linear layer, or several side by side (their outputs concatenated in order), with its
// weight packed once for few-row products (ops::linear_packed_forward): decoding runs the same
// weights on a few rows at every step, and packing costs about as much as one step. Inference
// only (no gradients). The packed kernel is the CPU's; on cuda the weight stays as it is and
// cuBLAS runs the product.
// LoRA updates attached to the layers stay unmerged beside the packed weight:
// y = W x + b + B (A x), with every layer's A stacked in A and the layers' scaled B as blocks
// of B (zero where a layer has no update).
#pragma once
#include <vector>

#include "nn/layers.h"

namespace qkv::nn {

struct PackedLinear {
  Tensor weight, bias;    // cpu: [ceil(out / 16), in, 16]; cuda: [out, in]. bias [out] or undefined
  Tensor lora_a, lora_b;  // [R, in], [out, R], or undefined without LoRA
  int64_t out = 0;
  PackedLinear() = default;
  PackedLinear(const Tensor& weight, const Tensor& bias);  // [out, in], [out] or undefined
  explicit PackedLinear(const std::vector<const Linear*>& layers);
  Var operator()(const Var& x) const;  // [..., in] -> [..., out]
};

}  // namespace qkv::nn
