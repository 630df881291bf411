// Inference in a compute type (as CTranslate2's compute_type): the linear layers' products in
// f32, in bf16 (bf16 operands, f32 sums) or in int8 (int8 weights with a scale per output row,
// activations quantized per row on the fly, exact int32 sums). A weight is prepared once
// (ops::pack_linear) and run by the CPU's kernels (ops/cpu/low_precision.h defines their
// arithmetic exactly). Softmax, normalisation and attention stay in f32.
#pragma once
#include <string>

#include "tensor/tensor.h"

namespace qkv::ops {

enum class ComputeType { f32, bf16, int8 };
// "f32" (or "float32"), "bf16" (or "bfloat16"), "int8"; anything else throws
// std::invalid_argument naming the value and the choices.
ComputeType compute_type_from_name(const std::string& name);
const char* compute_type_name(ComputeType type);
// The instruction set the bf16 and int8 kernels run on this CPU ("avx2" or "portable": the
// environment variable QKV_CPU_ISA may lower it); std::runtime_error for a bad QKV_CPU_ISA.
const char* low_precision_isa();

// Symmetric int8 per output row: w f32 [n, k] -> q i8 [n, k] and scale f32 [n] with
// scale[c] = max |w[c, :]| / 127 and q = round(w / scale); and back (q * scale).
void quantize_rows_int8(const Tensor& w, Tensor& q, Tensor& scale);
Tensor dequantize_rows_int8(const Tensor& q, const Tensor& scale);

// A linear weight [out, in] prepared for products in one compute type (cpu): f32 panels (the
// few-row kernel of ops::linear_packed_forward), bf16 panels, or int8 panels with their scales
// (in at most 2^17 for int8).
struct PackedWeight {
  ComputeType type = ComputeType::f32;
  Tensor packed;  // the kernel's layout
  Tensor scale;   // int8: f32 [out]
  int64_t out = 0, in = 0;
};
PackedWeight pack_linear(const Tensor& w, ComputeType type);
// y [..., out] = x [..., in] @ w^T + bias [out] (bias may be undefined); x f32 on the cpu.
Tensor linear_forward(const Tensor& x, const PackedWeight& w, const Tensor& bias);

}  // namespace qkv::ops
