// The kernels of Isa::avx512bf16 (bf16_dot.cpp): products on operands packed in pairs of bf16
// for AVX512_BF16's dot products, f32 sums. Only for a CPU that has it (cpu_isa()); the
// dispatching functions of low_precision.h call them.
#pragma once
#include <cstdint>

namespace qkv::ops::cpu {

// gemm_bf16 (low_precision.h) for k >= 1.
void gemm_bf16_dot(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                   const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                   int64_t ldc);

// The weight w [n, k] rounded to bf16 in panels of 32 outputs, [ceil(k / 2), 32] pairs each: its
// size in 16-bit elements, and the packing.
int64_t bf16_dot_packed_elements(int64_t n, int64_t k);
void pack_bf16_dot(const float* w, int64_t n, int64_t k, uint16_t* packed);

// linear_bf16 (low_precision.h) on a weight packed by pack_bf16_dot.
void linear_bf16_dot(const float* x, int64_t m, int64_t k, const uint16_t* packed,
                     const float* bias, int64_t n, float* y);

}  // namespace qkv::ops::cpu
