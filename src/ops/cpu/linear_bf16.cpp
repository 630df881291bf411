// The linear layer on bf16 weights: half the bytes of f32 to stream (a decoding step reads the
// whole weight for a few rows), the arithmetic in f32 below Isa::avx512bf16 (which runs
// bf16_dot.cpp's kernels instead).
//
// The weight is packed as linear_packed packs floats, panels of 16 outputs, each [k, 16], and a
// bf16 is the top half of a float, so the micro-kernel widens 16 bf16 into two vectors of 8
// floats by interleaving them with zeros (_mm256_unpacklo/hi_epi16: one load, two shuffles).
// Those interleave within 128-bit lanes, so the avx2 panel stores its columns in the order
// kAvx2Column that comes out as 0..15. x is rounded to bf16 once per call, row by row.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "ops/cpu/bf16_dot.h"
#include "ops/cpu/fork_cost.h"
#include "ops/cpu/low_precision.h"
#include "ops/cpu/panel_tasks.h"
#include "tensor/dtype.h"

// Without AVX (portable builds) GCC warns that these 32-byte vectors would pass between files
// differently; they never leave this file.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace qkv::ops::cpu {

namespace {
// Multiply-adds per second of one thread on the avx2 path (bench_low_precision, the 2-core Zen 4),
// to ask threads_pay_off; the portable path's, not measured there, taken as the same.
constexpr double kMacsPerSecond = 50e9;
// The column held at each position of an avx2 panel's row: unpacklo takes positions 0-3 and
// 8-11, unpackhi 4-7 and 12-15.
constexpr int kAvx2Column[kPanel] = {0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15};

// x rounded to bf16 and back, [m, k]: owned by the calling thread and reused by its next call.
float* rounded_rows(const float* x, int64_t m, int64_t k) {
  thread_local std::vector<float> buffer;
  if (buffer.size() < size_t(m * k)) buffer.resize(m * k);
  float* out = buffer.data();
#pragma omp parallel for schedule(static) if (m * k > (1 << 16))
  for (int64_t i = 0; i < m * k; ++i) out[i] = from_bf16(to_bf16(x[i]));
  return out;
}

// The portable path in GCC's vector extension, as linear_packed: AVX where the build targets
// it, pairs of SSE registers otherwise.
typedef float Vec __attribute__((vector_size(8 * sizeof(float))));
typedef uint32_t Bits __attribute__((vector_size(8 * sizeof(uint32_t))));
typedef uint16_t Halves __attribute__((vector_size(8 * sizeof(uint16_t))));

// 8 bf16 at p as floats: each the top half of its float.
inline Vec widen(const uint16_t* p) {
  Halves h;
  std::memcpy(&h, p, sizeof(h));
  Bits bits = __builtin_convertvector(h, Bits) << 16;
  Vec v;
  std::memcpy(&v, &bits, sizeof(v));
  return v;
}

// part[r] += x[r, i] * panel[i, :] for R rows (row stride k).
template <int R>
inline void step_portable(const float* x, int64_t k, const uint16_t* panel, int64_t i,
                          Vec (&part)[R][2]) {
  Vec w0 = widen(panel + i * kPanel), w1 = widen(panel + i * kPanel + 8);
  for (int r = 0; r < R; ++r) {
    float s = x[r * k + i];
    Vec xv = {s, s, s, s, s, s, s, s};
    part[r][0] += xv * w0;
    part[r][1] += xv * w1;
  }
}

// y[r, :cols] = x[r, :] @ panel[:, :cols] + bias for R rows (x row stride k, y row stride n).
template <int R>
void micro_portable(const float* x, int64_t k, const uint16_t* panel, const float* bias,
                    int64_t cols, float* y, int64_t n) {
  // With few rows the adds would wait on each other: U steps of i go to separate sums.
  constexpr int U = R == 1 ? 4 : R == 2 ? 2 : 1;
  Vec part[U][R][2] = {};
  int64_t i = 0;
  for (; i + U <= k; i += U)
    for (int u = 0; u < U; ++u) step_portable<R>(x, k, panel, i + u, part[u]);
  for (; i < k; ++i) step_portable<R>(x, k, panel, i, part[0]);
  // All R rows through registers first (constant indices keep part out of memory), then out.
  float out[R][kPanel];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      Vec sum = part[0][r][h];
#pragma GCC unroll 4
      for (int u = 1; u < U; ++u) sum += part[u][r][h];
      std::memcpy(out[r] + 8 * h, &sum, sizeof(sum));
    }
  for (int r = 0; r < R; ++r)
    for (int64_t c = 0; c < cols; ++c) y[r * n + c] = out[r][c] + (bias ? bias[c] : 0.f);
}

// part[r] += x[r, i] * panel[i, :] for R rows on an avx2 panel.
template <int R>
__attribute__((target("avx2,fma"))) inline void step_avx2(const float* x, int64_t k,
                                                          const uint16_t* panel, int64_t i,
                                                          __m256 (&part)[R][2]) {
  __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + i * kPanel));
  __m256 w0 = _mm256_castsi256_ps(_mm256_unpacklo_epi16(_mm256_setzero_si256(), v));
  __m256 w1 = _mm256_castsi256_ps(_mm256_unpackhi_epi16(_mm256_setzero_si256(), v));
  for (int r = 0; r < R; ++r) {
    __m256 xv = _mm256_broadcast_ss(x + r * k + i);
    part[r][0] = _mm256_fmadd_ps(xv, w0, part[r][0]);
    part[r][1] = _mm256_fmadd_ps(xv, w1, part[r][1]);
  }
}

// micro_portable on an avx2 panel, in intrinsics.
template <int R>
__attribute__((target("avx2,fma"))) void micro_avx2(const float* x, int64_t k,
                                                    const uint16_t* panel, const float* bias,
                                                    int64_t cols, float* y, int64_t n) {
  // With few rows the FMAs would wait on each other: U steps of i go to separate sums.
  constexpr int U = R == 1 ? 4 : R == 2 ? 2 : 1;
  __m256 acc[U][R][2];
  for (int u = 0; u < U; ++u)
    for (int r = 0; r < R; ++r) acc[u][r][0] = acc[u][r][1] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + U <= k; i += U)
    for (int u = 0; u < U; ++u) step_avx2<R>(x, k, panel, i + u, acc[u]);
  for (; i < k; ++i) step_avx2<R>(x, k, panel, i, acc[0]);
  // All R rows through registers first (constant indices keep acc out of memory), then out.
  float out[R][kPanel];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      __m256 sum = acc[0][r][h];
#pragma GCC unroll 4
      for (int u = 1; u < U; ++u) sum = _mm256_add_ps(sum, acc[u][r][h]);
      _mm256_storeu_ps(out[r] + 8 * h, sum);
    }
  for (int r = 0; r < R; ++r)
    for (int64_t c = 0; c < cols; ++c) y[r * n + c] = out[r][c] + (bias ? bias[c] : 0.f);
}

using Micro = void (*)(const float*, int64_t, const uint16_t*, const float*, int64_t, float*,
                       int64_t);
constexpr Micro kMicro[2][kRows + 1] = {
    {nullptr, micro_portable<1>, micro_portable<2>, micro_portable<3>, micro_portable<4>,
     micro_portable<5>, micro_portable<6>},
    {nullptr, micro_avx2<1>, micro_avx2<2>, micro_avx2<3>, micro_avx2<4>, micro_avx2<5>,
     micro_avx2<6>}};
}  // namespace

int64_t bf16_packed_elements(int64_t n, int64_t k, Isa isa) {
  if (isa >= Isa::avx512bf16) return bf16_dot_packed_elements(n, k);
  return (n + kPanel - 1) / kPanel * kPanel * k;
}

void pack_bf16(const float* w, int64_t n, int64_t k, Isa isa, uint16_t* packed) {
  if (isa >= Isa::avx512bf16) return pack_bf16_dot(w, n, k, packed);
  int64_t panels = (n + kPanel - 1) / kPanel;
  for (int64_t p = 0; p < panels; ++p) {
    uint16_t* panel = packed + p * k * kPanel;  // [k, 16]
    for (int64_t i = 0; i < k; ++i)
      for (int64_t pos = 0; pos < kPanel; ++pos) {
        int64_t row = p * kPanel + (isa >= Isa::avx2 ? kAvx2Column[pos] : pos);
        panel[i * kPanel + pos] = row < n ? to_bf16(w[row * k + i]).bits : 0;
      }
  }
}

void linear_bf16(const float* x, int64_t m, int64_t k, const uint16_t* packed, const float* bias,
                 int64_t n, Isa isa, float* y) {
  if (m <= 0 || n <= 0) return;
  if (isa >= Isa::avx512bf16) return linear_bf16_dot(x, m, k, packed, bias, n, y);
  const float* xb = rounded_rows(x, m, k);  // [m, k]
  const Micro* micro = kMicro[isa >= Isa::avx2];
  int64_t panels = (n + kPanel - 1) / kPanel;
  for_each_task(m, panels, 2 * kPanel * k, product_pays_for_threads(m, n, k, kMacsPerSecond),
                [&](int64_t p0, int64_t p1, const RowBlocks& rb, int64_t j0, int64_t j1) {
                  for (int64_t j = j0; j < j1; ++j) {
                    int64_t r = rb.row_of(j), rows = rb.row_of(j + 1) - r;
                    for (int64_t p = p0; p < p1; ++p) {
                      int64_t c0 = p * kPanel;
                      micro[rows](xb + r * k, k, packed + p * k * kPanel,
                                  bias ? bias + c0 : nullptr, std::min(kPanel, n - c0),
                                  y + r * n + c0, n);
                    }
                  }
                });
}

}  // namespace qkv::ops::cpu
