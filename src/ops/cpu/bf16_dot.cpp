// The bf16 products on AVX512_BF16 (ops/cpu/bf16_dot.h): each operand rounded to the nearest
// bf16 (ties to even), every product exact in f32, the products summed in f32.
//
// vdpbf16ps multiplies 16 pairs of bf16 by 16 pairs and adds each pair's two products into one of
// 16 f32 sums: 32 multiply-adds per instruction, twice an f32 FMA's. Both operands hold pairs
// along the summed dimension, so both are packed, rounding to bf16 as they go: b in panels of 32
// columns, [pairs, 32] (two registers per pair), a in panels of 12 rows, [pairs, 12], whose pairs
// the micro-kernel broadcasts: 12 rows x 32 columns in 24 registers of sums. A pair is one
// uint32, the first element in its low half. Unlike BLIS the summed dimension is not cut into
// blocks that stay in L1: a pair row of both panels (176 bytes) feeds 24 dot products, which L2
// streams fast enough, and so each output is written once. The linear layer's weight is packed
// once as b panels; its rows of x as a panels on each call.
// Where the CPU lacks AVX512_BF16, gemm_bf16 rounds the operands to bf16 in f32 and OpenBLAS
// multiplies them: the same products, summed in another order.

// GCC 12's AVX-512 intrinsics pass an undefined vector as the unused source of their masked
// forms, which its -Wuninitialized reports where they are inlined (GCC bug 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <algorithm>
#include <vector>

#include "ops/cpu/bf16_dot.h"
#include "ops/cpu/fork_cost.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/lane_masks.h"
#include "ops/cpu/low_precision.h"
#include "tensor/dtype.h"

namespace qkv::ops::cpu {

namespace {
constexpr int64_t kRowsPerPanel = 12;      // a's panels: rows per micro-kernel call
constexpr int64_t kColsPerPanel = 32;      // b's panels: columns per micro-kernel call
constexpr int64_t kTaskBytes = 256 << 10;  // a panels a task runs over one b panel: in L2
// Multiply-adds below which one thread is faster: waking the other costs tens of microseconds
// (passive OpenMP threads). The linear layer, whose decoding steps' products are small and many,
// asks threads_pay_off at the speed of one thread (bench_low_precision on the 2-core Zen 4).
constexpr int64_t kParallelMin = 1 << 18;
constexpr double kLinearMacsPerSecond = 100e9;

#define QKV_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

// 16 floats rounded to bf16 (ties to even), zero-extended into the low halves of 16 uint32.
QKV_BF16_TARGET inline __m512i bf16_low_halves(__m512 x) {
  return _mm512_cvtepu16_epi32(reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(x)));
}

// out[j] = pair(lo[j], hi[j]) for j < count, 0 up to `width`; hi null: zeros.
QKV_BF16_TARGET void pack_interleaved(const float* lo, const float* hi, int64_t count,
                                      int64_t width, uint32_t* out) {
  for (int64_t j = 0; j < width; j += 16) {
    __mmask16 mask = first_lanes(count - j);
    __m512i low = bf16_low_halves(_mm512_maskz_loadu_ps(mask, lo + j));
    __m512i high =
        hi ? bf16_low_halves(_mm512_maskz_loadu_ps(mask, hi + j)) : _mm512_setzero_si512();
    __mmask16 store = first_lanes(width - j);
    _mm512_mask_storeu_epi32(out + j, store, _mm512_or_si512(low, _mm512_slli_epi32(high, 16)));
  }
}

// t[i] holds row i of a 16 x 16 matrix of uint32; afterwards t[j] holds its column j. Within each
// 128-bit lane 4 x 4 blocks are transposed (unpack by 32 and 64 bits), then the lanes
// themselves (shuffle_i32x4).
QKV_BF16_TARGET inline void transpose16(__m512i (&t)[16]) {
  __m512i u[16];
#pragma GCC unroll 8
  for (int i = 0; i < 16; i += 2) {
    u[i] = _mm512_unpacklo_epi32(t[i], t[i + 1]);
    u[i + 1] = _mm512_unpackhi_epi32(t[i], t[i + 1]);
  }
  // t[4g + c], lane L: rows 4g .. 4g + 3 of column 4L + c.
#pragma GCC unroll 4
  for (int g = 0; g < 16; g += 4) {
    t[g] = _mm512_unpacklo_epi64(u[g], u[g + 2]);
    t[g + 1] = _mm512_unpackhi_epi64(u[g], u[g + 2]);
    t[g + 2] = _mm512_unpacklo_epi64(u[g + 1], u[g + 3]);
    t[g + 3] = _mm512_unpackhi_epi64(u[g + 1], u[g + 3]);
  }
  __m512i column[16];
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    __m512i p0 = _mm512_shuffle_i32x4(t[c], t[4 + c], 0x44);  // lanes 0, 1 of each
    __m512i p1 = _mm512_shuffle_i32x4(t[c], t[4 + c], 0xee);  // lanes 2, 3
    __m512i p2 = _mm512_shuffle_i32x4(t[8 + c], t[12 + c], 0x44);
    __m512i p3 = _mm512_shuffle_i32x4(t[8 + c], t[12 + c], 0xee);
    column[c] = _mm512_shuffle_i32x4(p0, p2, 0x88);       // lane 0 of the four
    column[4 + c] = _mm512_shuffle_i32x4(p0, p2, 0xdd);   // lane 1
    column[8 + c] = _mm512_shuffle_i32x4(p1, p3, 0x88);   // lane 2
    column[12 + c] = _mm512_shuffle_i32x4(p1, p3, 0xdd);  // lane 3
  }
#pragma GCC unroll 16
  for (int j = 0; j < 16; ++j) t[j] = column[j];
}

// out[p, r] = pair(src[r, 2p], src[r, 2p + 1]) for rows r < rows (0 up to `width`) and pairs
// p < ceil(count / 2) (an odd count ends in a pair with a zero): 16 pairs of 16 rows at a time,
// rounded and transposed in registers.
QKV_BF16_TARGET void pack_transposed(const float* src, int64_t ld, int64_t rows, int64_t count,
                                     int64_t width, uint32_t* out) {
  int64_t pairs = (count + 1) / 2;
  for (int64_t r0 = 0; r0 < width; r0 += 16) {
    __mmask16 store = first_lanes(width - r0);
    for (int64_t p0 = 0; p0 < pairs; p0 += 16) {
      int64_t left = count - 2 * p0;  // floats left in each row, at least 1
      __mmask16 m0 = first_lanes(left), m1 = first_lanes(left - 16);
      __m512i t[16];
#pragma GCC unroll 16
      for (int r = 0; r < 16; ++r) {
        const float* row = src + (r0 + r) * ld + 2 * p0;
        t[r] = r0 + r < rows
                   ? reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(
                         _mm512_maskz_loadu_ps(m1, row + 16), _mm512_maskz_loadu_ps(m0, row)))
                   : _mm512_setzero_si512();
      }
      transpose16(t);
      for (int64_t q = 0; q < std::min<int64_t>(16, pairs - p0); ++q)
        _mm512_mask_storeu_epi32(out + (p0 + q) * width + r0, store, t[q]);
    }
  }
}

// Packs the operand x's [rows, summed count) into panels of `width` rows (of op(x):
// a's rows, b's columns), [pairs, width] each, shared among the threads of the enclosing
// parallel region (no barrier at the end).
// along_rows: x's rows are op(x)'s, contiguous along the summed dimension (a, or b transposed),
// packed panel by panel; else x is [summed, rows] (a transposed, or b) and each two of its rows
// give a pair row of every panel, packed pair row by pair row so that x is read in order.
void pack_panels(bool along_rows, const float* x, int64_t ld, int64_t rows, int64_t count,
                 int64_t width, uint32_t* out) {
  int64_t pairs = (count + 1) / 2, panels = (rows + width - 1) / width;
  if (along_rows) {
#pragma omp for schedule(static) nowait
    for (int64_t j = 0; j < panels; ++j)
      pack_transposed(x + j * width * ld, ld, std::min(width, rows - j * width), count, width,
                      out + j * pairs * width);
    return;
  }
#pragma omp for schedule(static) nowait
  for (int64_t p = 0; p < pairs; ++p) {
    const float* lo = x + 2 * p * ld;
    const float* hi = 2 * p + 1 < count ? lo + ld : nullptr;
    for (int64_t j = 0; j < panels; ++j)
      pack_interleaved(lo + j * width, hi ? hi + j * width : nullptr,
                       std::min(width, rows - j * width), width, out + (j * pairs + p) * width);
  }
}

// part[r] += the R rows' pairs p of an a panel [pairs, 12] times pair row p of a b panel
// [pairs, 32].
template <int R>
QKV_BF16_TARGET inline void dot_step(const uint32_t* a, const uint32_t* b, int64_t p,
                                     __m512 (&part)[R][2]) {
  __m512bh b0 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b + p * kColsPerPanel));
  __m512bh b1 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b + p * kColsPerPanel + 16));
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
    __m512bh pair = reinterpret_cast<__m512bh>(_mm512_set1_epi32(int(a[p * kRowsPerPanel + r])));
    part[r][0] = _mm512_dpbf16_ps(part[r][0], pair, b0);
    part[r][1] = _mm512_dpbf16_ps(part[r][1], pair, b1);
  }
}

// c[r, :cols] = alpha * sum + beta * c[r, :cols] (+ bias[:cols]) for the R rows of an a panel
// [pairs, 12] against a b panel [pairs, 32]; beta 0 never reads c, bias may be null. With few
// rows the dot products would wait on each other: U steps go to separate sums.
template <int R>
QKV_BF16_TARGET void micro_kernel(int64_t pairs, const uint32_t* a, const uint32_t* b, float alpha,
                                  float beta, const float* bias, int64_t cols, float* c,
                                  int64_t ldc) {
  constexpr int U = R <= 2 ? 4 : R <= 4 ? 2 : 1;
  __m512 sum[U][R][2];
#pragma GCC unroll 4
  for (int u = 0; u < U; ++u)
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) sum[u][r][0] = sum[u][r][1] = _mm512_setzero_ps();
  int64_t p = 0;
  for (; p + U <= pairs; p += U)
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) dot_step<R>(a, b, p + u, sum[u]);
  for (; p < pairs; ++p) dot_step<R>(a, b, p, sum[0]);
  __mmask16 mask[2] = {first_lanes(cols), first_lanes(cols - 16)};
  __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      __m512 total = sum[0][r][h];
#pragma GCC unroll 4
      for (int u = 1; u < U; ++u) total = _mm512_add_ps(total, sum[u][r][h]);
      float* out = c + r * ldc + 16 * h;
      __m512 v = _mm512_mul_ps(va, total);
      if (beta != 0.f) v = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask[h], out), v);
      if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask[h], bias + 16 * h));
      _mm512_mask_storeu_ps(out, mask[h], v);
    }
}

using Micro = void (*)(int64_t, const uint32_t*, const uint32_t*, float, float, const float*,
                       int64_t, float*, int64_t);
constexpr Micro kMicro[kRowsPerPanel + 1] = {
    nullptr,          micro_kernel<1>,  micro_kernel<2>, micro_kernel<3>, micro_kernel<4>,
    micro_kernel<5>,  micro_kernel<6>,  micro_kernel<7>, micro_kernel<8>, micro_kernel<9>,
    micro_kernel<10>, micro_kernel<11>, micro_kernel<12>};

// c [m, n] = alpha * the a panels [a_panels, pairs, 12] times the b panels [b_panels, pairs, 32]
// + beta * c (+ bias), shared among the threads of the enclosing parallel region: each task one
// b panel against the a panels that fit kTaskBytes (in L2).
void multiply_panels(int64_t m, int64_t n, int64_t pairs, const uint32_t* pa, const uint32_t* pb,
                     float alpha, float beta, const float* bias, float* c, int64_t ldc) {
  int64_t a_panels = (m + kRowsPerPanel - 1) / kRowsPerPanel;
  int64_t b_panels = (n + kColsPerPanel - 1) / kColsPerPanel;
  // Groups of a panels that fit kTaskBytes, of equal size (a short last group left the threads'
  // static shares unequal).
  int64_t fit = std::max<int64_t>(1, kTaskBytes / (pairs * kRowsPerPanel * 4));
  int64_t tasks_a = (a_panels + fit - 1) / fit, per_task = (a_panels + tasks_a - 1) / tasks_a;
#pragma omp for collapse(2) schedule(static)
  for (int64_t ta = 0; ta < tasks_a; ++ta)
    for (int64_t j = 0; j < b_panels; ++j) {
      int64_t j0 = j * kColsPerPanel;
      for (int64_t i = ta * per_task; i < std::min(a_panels, (ta + 1) * per_task); ++i) {
        int64_t i0 = i * kRowsPerPanel;
        kMicro[std::min(kRowsPerPanel, m - i0)](
            pairs, pa + i * pairs * kRowsPerPanel, pb + j * pairs * kColsPerPanel, alpha, beta,
            bias ? bias + j0 : nullptr, std::min(kColsPerPanel, n - j0), c + i0 * ldc + j0, ldc);
      }
    }
}

// op(x) [rows, cols] (x's leading dimension ld) rounded to bf16 in f32, stored densely as op(x).
std::vector<float> rounded(bool trans, const float* x, int64_t rows, int64_t cols, int64_t ld) {
  std::vector<float> out(size_t(rows * cols));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      out[i * cols + j] = from_bf16(to_bf16(trans ? x[j * ld + i] : x[i * ld + j]));
  return out;
}
}  // namespace

void gemm_bf16_dot(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                   const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                   int64_t ldc) {
  int64_t pairs = (k + 1) / 2;
  int64_t a_panels = (m + kRowsPerPanel - 1) / kRowsPerPanel;
  int64_t b_panels = (n + kColsPerPanel - 1) / kColsPerPanel;
  thread_local std::vector<uint32_t> packed_a, packed_b;
  packed_a.resize(size_t(a_panels * pairs * kRowsPerPanel));
  packed_b.resize(size_t(b_panels * pairs * kColsPerPanel));
  uint32_t* pa = packed_a.data();  // this thread's, also inside the parallel region
  uint32_t* pb = packed_b.data();
#pragma omp parallel if (m * n * k >= kParallelMin)
  {
    pack_panels(!trans_a, a, lda, m, k, kRowsPerPanel, pa);
    pack_panels(trans_b, b, ldb, n, k, kColsPerPanel, pb);
#pragma omp barrier
    multiply_panels(m, n, pairs, pa, pb, alpha, beta, nullptr, c, ldc);
  }
}

int64_t bf16_dot_packed_elements(int64_t n, int64_t k) {
  return (n + kColsPerPanel - 1) / kColsPerPanel * ((k + 1) / 2) * kColsPerPanel * 2;
}

void pack_bf16_dot(const float* w, int64_t n, int64_t k, uint16_t* packed) {
  pack_panels(true, w, k, n, k, kColsPerPanel, reinterpret_cast<uint32_t*>(packed));
}

void linear_bf16_dot(const float* x, int64_t m, int64_t k, const uint16_t* packed,
                     const float* bias, int64_t n, float* y) {
  int64_t pairs = (k + 1) / 2, a_panels = (m + kRowsPerPanel - 1) / kRowsPerPanel;
  thread_local std::vector<uint32_t> packed_x;
  packed_x.resize(size_t(a_panels * pairs * kRowsPerPanel));
  uint32_t* px = packed_x.data();  // this thread's, also inside the parallel region
  pack_panels(true, x, k, m, k, kRowsPerPanel, px);  // on this thread: 1/n of the work
#pragma omp parallel if (product_pays_for_threads(m, n, k, kLinearMacsPerSecond))
  multiply_panels(m, n, pairs, px, reinterpret_cast<const uint32_t*>(packed), 1.f, 0.f, bias, y, n);
}

void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
               int64_t ldc, Isa isa) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) return gemm(false, false, m, n, 0, alpha, a, 1, b, n, beta, c, ldc);  // beta * c
  if (isa >= Isa::avx512bf16)
    return gemm_bf16_dot(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  std::vector<float> ra = rounded(trans_a, a, m, k, lda), rb = rounded(trans_b, b, k, n, ldb);
  gemm(false, false, m, n, k, alpha, ra.data(), k, rb.data(), n, beta, c, ldc);
}

}  // namespace qkv::ops::cpu
