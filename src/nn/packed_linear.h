// A Linear layer, or several side by side (their outputs concatenated in order), with its
// weight packed once for one compute type (ops/compute_type.h): decoding runs the same weights
// on a few rows at every step, and packing costs about as much as one step; bf16 and int8 also
// convert the weight once. Inference only (no gradients). The packed kernels are the CPU's; on
// cuda the weight stays as it is and cuBLAS runs the product (f32 only).
// LoRA updates attached to the layers stay unmerged beside the packed weight:
// y = W x + b + B (A x), with every layer's A stacked in A and the layers' scaled B as blocks
// of B (zero where a layer has no update).
#pragma once
#include <vector>

#include "nn/layers.h"
#include "ops/compute_type.h"

namespace qkv::nn {

struct PackedLinear {
  ops::PackedWeight packed;  // cpu
  Tensor weight;             // cuda: [out, in]
  Tensor bias;               // [out] or undefined
  Tensor lora_a, lora_b;     // [R, in], [out, R], or undefined without LoRA
  int64_t out = 0;
  PackedLinear() = default;
  // weight [out, in], bias [out] or undefined. A compute type other than f32 needs the cpu.
  PackedLinear(const Tensor& weight, const Tensor& bias,
               ops::ComputeType type = ops::ComputeType::f32);
  explicit PackedLinear(const std::vector<const Linear*>& layers,
                        ops::ComputeType type = ops::ComputeType::f32);
  Var operator()(const Var& x) const;  // [..., in] -> [..., out]
};

// A whole model's inference in a compute type: each of `linears` (a model's linears(): the
// attention projections, feed-forward layers and experts; not embeddings, output projections
// or classifier heads) gets its weight, bias and LoRA update packed for `type` (Linear::packed),
// which it then runs whenever no tape records; f32 drops the packing (the BLAS product again).
// Call after the weights are loaded and adapters attached.
void set_compute_type(const LinearList& linears, ops::ComputeType type);

}  // namespace qkv::nn
