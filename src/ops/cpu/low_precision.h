// Linear products in low precision on the CPU: y [m, n] = x [m, k] @ w^T + bias, with the weight
// w [n, k] held as int8 (one symmetric scale per output row) or as bf16, packed once into the
// layout of the kernel this CPU runs. Accumulation is exact in int32 (int8) or in f32 (bf16).
// Also the f32 few-row product on a packed weight, in the same CPU's instruction set.
#pragma once
#include <cstdint>
#include <vector>

namespace qkv::ops::cpu {

// The instruction sets the kernels are written for, from the plainest up. avx512vnni (AVX-512
// F/BW/VL with VNNI's 8-bit dot products) has its own int8 kernel and f32 few-row kernel; bf16
// runs avx2's there. avx512bf16 (avx512vnni and AVX512_BF16's bf16 dot products) has its own bf16
// kernels.
enum class Isa { portable, avx2, avx512vnni, avx512bf16 };

// The best Isa this CPU runs, capped by the environment variable QKV_CPU_ISA ("portable",
// "avx2", "avx512vnni" or "avx512bf16"; read once). An unknown value, or one above what the CPU
// has, throws std::runtime_error naming the variable and what the CPU offers.
Isa cpu_isa();
const char* isa_name(Isa isa);
// The Isas up to `best`, plainest first (a CPU that runs one runs those below it too).
std::vector<Isa> isas_up_to(Isa best);

// int8 weights, per output row: scale[c] = max_i |w[c, i]| / 127 (0 for a row of zeros) and
// q[c, i] = round-half-even(w[c, i] / scale[c]) in [-127, 127].
void quantize_rows_int8(const float* w, int64_t n, int64_t k, int8_t* q, float* scale);

// The packed form of q [n, k] for `isa`: its size in bytes, and the packing.
int64_t int8_packed_bytes(int64_t n, int64_t k, Isa isa);
void pack_int8(const int8_t* q, int64_t n, int64_t k, Isa isa, int8_t* packed);

// Each row r of x is quantized the same way (sx[r] = max_i |x[r, i]| / 127, xq = round(x / sx)),
// the products summed exactly in int32, and
//   y[r, c] = float(sum_i xq[r, i] q[c, i]) * (sx[r] * scale[c]) + bias[c]   (bias null: 0).
// k at most 2^17 (the int32 sums cannot overflow). Every Isa gives the same bits.
void linear_int8(const float* x, int64_t m, int64_t k, const int8_t* packed, const float* scale,
                 const float* bias, int64_t n, Isa isa, float* y);

// bf16 weights: w rounded to the nearest bf16 (ties to even), packed for `isa`; its size in
// 16-bit elements, and the packing.
int64_t bf16_packed_elements(int64_t n, int64_t k, Isa isa);
void pack_bf16(const float* w, int64_t n, int64_t k, Isa isa, uint16_t* packed);

// x rounded to bf16 the same way, each product exact in f32, summed in f32, then + bias.
void linear_bf16(const float* x, int64_t m, int64_t k, const uint16_t* packed, const float* bias,
                 int64_t n, Isa isa, float* y);

// Row-major c [m, n] = alpha * op(a) @ op(b) + beta * c with op(a) and op(b) rounded to bf16
// (ties to even), each product exact in f32 and summed in f32 (beta 0: c is not read). avx512bf16
// packs the operands in bf16 and multiplies with AVX512_BF16; below it the rounded operands go to
// the f32 gemm (slower).
void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
               int64_t ldc, Isa isa);

// f32 on the weight packed by pack_linear_weight (kernels.h), with the kernels of `isa` (AVX-512
// ones from avx512vnni up); kernels::linear_packed runs it with cpu_isa().
void linear_f32_packed(const float* x, const float* packed, const float* bias, int64_t m, int64_t n,
                       int64_t k, Isa isa, bool accumulate, float* y);

// What cpu_isa() makes of a value of QKV_CPU_ISA (null or empty: `best`), given the best Isa of
// this CPU; throws as cpu_isa() does. Declared for the tests, which cannot set the variable
// again once cpu_isa() has read it.
Isa isa_from_name(const char* value, Isa best);

}  // namespace qkv::ops::cpu
