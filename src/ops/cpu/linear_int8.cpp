// The linear layer on int8 weights (one scale per output row) and int8 activations (one scale
// per row, quantized on every call), the products summed exactly in int32.
//
// AVX2 has no 8-bit multiply-add that cannot saturate, but _mm256_madd_epi16 multiplies 16-bit
// pairs and sums each pair into 32 bits: with both operands in [-127, 127] it is exact. So the
// weight is packed in panels of 16 outputs, each [ceil(k / 2), 16, 2] (the two k values of one
// output side by side), a row of x is widened to int16 once per call, and the micro-kernel
// broadcasts one pair (x[2i], x[2i + 1]) as an int32 against the 16 outputs' pairs: R rows x 16
// outputs in 2R registers of 8 int32 sums, as linear_packed does with floats.
// The portable path packs 4 k values side by side and multiplies in int32, in GCC's vector
// extension.
// AVX-512 VNNI's vpdpbusd multiplies 4 unsigned bytes by 4 signed ones and adds the 4 products to
// an int32: 64 products per instruction. It packs the weight as the portable path does ([k4 / 4,
// 16, 4]: one panel row is one 64-byte register) and quantizes x as the others do, stored as the
// unsigned byte xq + 128. Each panel ends in its outputs' 128 * sum_i q[c, i], subtracted from
// the sums at the end. The int32 adds wrap, and the exact result fits, so the difference is exact.
// All three sum exactly and end in the same multiply-add (see finish), so they give the same bits.

// GCC 12's AVX-512 intrinsics pass an undefined vector as the unused source of their masked
// forms, which its -Wuninitialized reports where they are inlined (GCC bug 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <vector>

#include "ops/cpu/fork_cost.h"
#include "ops/cpu/lane_masks.h"
#include "ops/cpu/low_precision.h"
#include "ops/cpu/panel_tasks.h"

// Without AVX (portable builds) GCC warns that these 32-byte vectors would pass between files
// differently; they never leave this file.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace qkv::ops::cpu {

namespace {
// Multiply-adds per second of one thread, by Isa, to ask threads_pay_off: bench_low_precision on
// the 2-core Zen 4 for avx2 and vnni; the portable path's, not measured there, taken as a fifth
// of avx2's.
constexpr double kMacsPerSecond[] = {15e9, 75e9, 180e9, 180e9};
static_assert(std::size(kMacsPerSecond) == size_t(Isa::avx512bf16) + 1);

// At least n elements owned by the calling thread, reused by its next call (a decoding step
// allocates nothing). Not ops/cpu/scratch.h's: a caller may hand us x in that one.
template <class T>
T* scratch(size_t n) {
  thread_local std::vector<T> buffer;
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

// The one definition of both quantizations: s = max |v| / 127 (0 when that is 0), q =
// round-half-even(v / s), clamped (which also sends NaN to -127, as _mm256_max_ps does).
template <class T>
void quantize_row(const float* v, int64_t k, T* q, float* scale) {
  float max = 0.f;
  for (int64_t i = 0; i < k; ++i) max = std::max(max, std::fabs(v[i]));
  float s = max / 127.f;
  *scale = s;
  for (int64_t i = 0; i < k; ++i)
    q[i] = s == 0.f ? T(0) : T(std::fmin(std::fmax(std::nearbyint(v[i] / s), -127.f), 127.f));
}

// y = float(sum) * (sx * scale) + bias, rounded once: an explicit fma, because whether the
// compiler fuses a written multiply and add differs between paths and builds.
inline float finish(int32_t sum, float sx, float scale, float bias) {
  return std::fma(float(sum), sx * scale, bias);
}

// k padded with zeros to what the packed panels hold: pairs (avx2) or fours (portable, vnni).
inline int64_t k_group(Isa isa) {
  return isa == Isa::avx2 ? 2 : 4;
}
inline int64_t padded_k(int64_t k, Isa isa) {
  return (k + k_group(isa) - 1) / k_group(isa) * k_group(isa);
}

// A packed panel: kPanel outputs' weights, and for vnni their int32 sums of 128 * q.
inline int64_t panel_bytes(int64_t k, Isa isa) {
  return kPanel * padded_k(k, isa) + (isa >= Isa::avx512vnni ? kPanel * 4 : 0);
}

// ---- portable: panels [k4 / 4, 16, 4] (k4 = k rounded up to a multiple of 4: the 4 k values
// of one output side by side), x rows as int8 [m, k4]. In GCC's vector extension (AVX where the
// build targets it, pairs of SSE registers otherwise) a vector of 8 int32 holds 4 k values of 8
// outputs; shifts sign-extend each byte in place (no shuffles, which the compiler would do one
// element at a time) and the products are int32.

typedef int32_t Ints __attribute__((vector_size(8 * sizeof(int32_t))));
typedef uint32_t Bits __attribute__((vector_size(8 * sizeof(uint32_t))));

// acc[r] += xq[r, 4j + b] * panel[j, :, b] for b < 4 and R rows (row stride k4).
template <int R>
inline void step_portable(const int8_t* xq, int64_t k4, const int8_t* panel, int64_t j,
                          Ints (&acc)[R][2]) {
  Bits v0, v1;
  std::memcpy(&v0, panel + j * 4 * kPanel, sizeof(Bits));
  std::memcpy(&v1, panel + j * 4 * kPanel + sizeof(Bits), sizeof(Bits));
#pragma GCC unroll 4
  for (int b = 0; b < 4; ++b) {
    // Byte b to the top (unsigned: no overflow), then an arithmetic shift back down.
    Ints w0 = Ints(v0 << (24 - 8 * b)) >> 24, w1 = Ints(v1 << (24 - 8 * b)) >> 24;
    for (int r = 0; r < R; ++r) {
      int32_t s = xq[r * k4 + 4 * j + b];
      Ints xv = {s, s, s, s, s, s, s, s};
      acc[r][0] += xv * w0;
      acc[r][1] += xv * w1;
    }
  }
}

// y[r, :cols] = finish(xq[r, :] . panel[:, c]) for R rows; xq [R, k4] (row stride k4), panel
// [k4 / 4, 16, 4], y with row stride n.
template <int R>
void micro_portable(const int8_t* xq, const float* sx, int64_t k4, const int8_t* panel,
                    const float* scale, const float* bias, int64_t cols, float* y, int64_t n) {
  Ints acc[R][2] = {};
  for (int64_t j = 0; j < k4 / 4; ++j) step_portable<R>(xq, k4, panel, j, acc);
  // All R rows through registers first (constant indices keep acc out of memory), then out.
  int32_t sums[R][kPanel];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    std::memcpy(sums[r], &acc[r][0], sizeof(Ints));
    std::memcpy(sums[r] + 8, &acc[r][1], sizeof(Ints));
  }
  for (int r = 0; r < R; ++r)
    for (int64_t c = 0; c < cols; ++c)
      y[r * n + c] = finish(sums[r][c], sx[r], scale[c], bias ? bias[c] : 0.f);
}

// ---- avx2: panels [kp / 2, 16, 2] (kp = k rounded up to even), x rows as int16 [m, kp].

__attribute__((target("avx2,fma"))) void quantize_rows_avx2(const float* x, int64_t m, int64_t k,
                                                            int64_t kp, int16_t* xq, float* sx) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
#pragma omp parallel for schedule(static) if (m * k > (1 << 16))
  for (int64_t r = 0; r < m; ++r) {
    const float* v = x + r * k;
    int16_t* q = xq + r * kp;
    __m256 vmax = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= k; i += 8)
      // max_ps returns its second operand where one is NaN: NaNs are skipped, as in std::max.
      vmax = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(v + i), abs_mask), vmax);
    float lanes[8], max = 0.f;
    _mm256_storeu_ps(lanes, vmax);
    for (float l : lanes) max = std::max(max, l);
    for (int64_t t = i; t < k; ++t) max = std::max(max, std::fabs(v[t]));
    float s = max / 127.f;
    sx[r] = s;
    if (s == 0.f) {
      std::fill(q, q + kp, int16_t(0));
      continue;
    }
    const __m256 vs = _mm256_set1_ps(s), lo = _mm256_set1_ps(-127.f), hi = _mm256_set1_ps(127.f);
    for (i = 0; i + 16 <= k; i += 16) {
      // cvtps rounds half to even like nearbyint; max_ps(NaN, lo) is lo, as fmax is.
      __m256i a = _mm256_cvtps_epi32(
          _mm256_min_ps(_mm256_max_ps(_mm256_div_ps(_mm256_loadu_ps(v + i), vs), lo), hi));
      __m256i b = _mm256_cvtps_epi32(
          _mm256_min_ps(_mm256_max_ps(_mm256_div_ps(_mm256_loadu_ps(v + i + 8), vs), lo), hi));
      // packs interleaves the 128-bit lanes: a0 b0 a1 b1; the permute puts them in order.
      __m256i ab = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xd8);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), ab);
    }
    for (; i < k; ++i)
      q[i] = int16_t(std::fmin(std::fmax(std::nearbyint(v[i] / s), -127.f), 127.f));
    for (; i < kp; ++i) q[i] = 0;
  }
}

// y[r, :cols] = finish(xq[r, :] . panel[:, c]) for R rows; xq [R, kp] (row stride kp), panel
// [kp / 2, 16, 2], y with row stride n.
template <int R>
__attribute__((target("avx2,fma"))) void micro_avx2(const int16_t* xq, const float* sx, int64_t kp,
                                                    const int8_t* panel, const float* scale,
                                                    const float* bias, int64_t cols, float* y,
                                                    int64_t n) {
  __m256i acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
  for (int64_t i = 0; i < kp / 2; ++i) {
    const int8_t* w = panel + i * 2 * kPanel;
    __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
    __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 16)));
    for (int r = 0; r < R; ++r) {
      int32_t pair;
      std::memcpy(&pair, xq + r * kp + 2 * i, 4);
      __m256i xv = _mm256_set1_epi32(pair);
      acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(xv, w0));
      acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(xv, w1));
    }
  }
  __m256 s0 = _mm256_loadu_ps(scale), s1 = _mm256_loadu_ps(scale + 8);
  __m256 b0 = bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();
  __m256 b1 = bias ? _mm256_loadu_ps(bias + 8) : _mm256_setzero_ps();
  // All R rows through registers first (constant indices keep acc out of memory), then out.
  float out[R][kPanel];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    __m256 xs = _mm256_set1_ps(sx[r]);
    _mm256_storeu_ps(out[r],
                     _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r][0]), _mm256_mul_ps(xs, s0), b0));
    _mm256_storeu_ps(out[r] + 8,
                     _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r][1]), _mm256_mul_ps(xs, s1), b1));
  }
  for (int r = 0; r < R; ++r) std::memcpy(y + r * n, out[r], cols * sizeof(float));
}

// ---- avx512vnni: panels [k4 / 4, 16, 4] then int32 [16] (128 * sum_i q[c, i]), x rows as
// uint8 xq + 128 [m, k4] (128 in the padding).

__attribute__((target("avx512f,avx512bw,avx512vl"))) void quantize_rows_vnni(
    const float* x, int64_t m, int64_t k, int64_t k4, uint8_t* xu, float* sx) {
#pragma omp parallel for schedule(static) if (m * k > (1 << 16))
  for (int64_t r = 0; r < m; ++r) {
    const float* v = x + r * k;
    uint8_t* u = xu + r * k4;
    __m512 vmax = _mm512_setzero_ps();
    for (int64_t i = 0; i < k; i += 16)
      // Lanes past k load 0; max_ps returns its second operand where one is NaN, as avx2's.
      vmax = _mm512_max_ps(_mm512_abs_ps(_mm512_maskz_loadu_ps(first_lanes(k - i), v + i)), vmax);
    float s = _mm512_reduce_max_ps(vmax) / 127.f;
    sx[r] = s;
    if (s == 0.f) {
      std::fill(u, u + k4, uint8_t(128));
      continue;
    }
    const __m512 vs = _mm512_set1_ps(s), lo = _mm512_set1_ps(-127.f), hi = _mm512_set1_ps(127.f);
    const __m512i offset = _mm512_set1_epi32(128);
    for (int64_t i = 0; i < k4; i += 16) {
      __m512 q = _mm512_min_ps(
          _mm512_max_ps(_mm512_div_ps(_mm512_maskz_loadu_ps(first_lanes(k - i), v + i), vs), lo),
          hi);
      __m512i shifted = _mm512_add_epi32(_mm512_cvtps_epi32(q), offset);  // [1, 255]
      _mm_mask_storeu_epi8(u + i, first_lanes(k4 - i), _mm512_cvtepi32_epi8(shifted));
    }
  }
}

// y[r, :cols] = finish(xq[r, :] . panel[:, c]) for R rows; xu [R, k4] (row stride k4), panel
// [k4 / 4, 16, 4] and its sums, y with row stride n.
template <int R>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void micro_vnni(
    const uint8_t* xu, const float* sx, int64_t k4, const int8_t* panel, const float* scale,
    const float* bias, int64_t cols, float* y, int64_t n) {
  // One or two rows alone cannot hide vpdpbusd's latency: they alternate two sets of sums.
  constexpr int kSets = R < 3 ? 2 : 1;
  __m512i acc[kSets][R];
  for (int a = 0; a < kSets; ++a)
    for (int r = 0; r < R; ++r) acc[a][r] = _mm512_setzero_si512();
  int64_t groups = k4 / 4;
  for (int64_t j = 0; j < groups; j += kSets)
    for (int a = 0; a < kSets && j + a < groups; ++a) {
      __m512i w = _mm512_loadu_si512(panel + (j + a) * 4 * kPanel);
      for (int r = 0; r < R; ++r) {
        int32_t four;
        std::memcpy(&four, xu + r * k4 + 4 * (j + a), 4);
        acc[a][r] = _mm512_dpbusd_epi32(acc[a][r], _mm512_set1_epi32(four), w);
      }
    }
  __m512i shift = _mm512_loadu_si512(panel + groups * 4 * kPanel);
  __m512 s = _mm512_loadu_ps(scale), b = bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();
  __mmask16 out = first_lanes(cols);
  for (int r = 0; r < R; ++r) {
    __m512i sum = kSets == 2 ? _mm512_add_epi32(acc[0][r], acc[kSets - 1][r]) : acc[0][r];
    __m512 xs = _mm512_set1_ps(sx[r]);
    _mm512_mask_storeu_ps(
        y + r * n, out,
        _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(sum, shift)), _mm512_mul_ps(xs, s), b));
  }
}

template <class X>
using Micro = void (*)(const X*, const float*, int64_t, const int8_t*, const float*, const float*,
                       int64_t, float*, int64_t);
constexpr Micro<int8_t> kMicroPortable[kRows + 1] = {
    nullptr,           micro_portable<1>, micro_portable<2>, micro_portable<3>,
    micro_portable<4>, micro_portable<5>, micro_portable<6>};
constexpr Micro<int16_t> kMicroAvx2[kRows + 1] = {nullptr,       micro_avx2<1>, micro_avx2<2>,
                                                  micro_avx2<3>, micro_avx2<4>, micro_avx2<5>,
                                                  micro_avx2<6>};
constexpr Micro<uint8_t> kMicroVnni[kRows + 1] = {nullptr,       micro_vnni<1>, micro_vnni<2>,
                                                  micro_vnni<3>, micro_vnni<4>, micro_vnni<5>,
                                                  micro_vnni<6>};

// y = finish(xq @ q^T) on panels of kPanel outputs, each `bytes` long: xq [m, kx] (int8
// [m, k4] portable, int16 [m, kp] avx2, uint8 [m, k4] vnni).
template <class X>
void linear_panels(const Micro<X>* micro, const X* xq, const float* sx, int64_t m, int64_t kx,
                   const int8_t* packed, int64_t bytes, const float* scale, const float* bias,
                   int64_t n, float* y, bool parallel) {
  int64_t panels = (n + kPanel - 1) / kPanel;
  for_each_task(m, panels, bytes, parallel,
                [&](int64_t p0, int64_t p1, const RowBlocks& rb, int64_t j0, int64_t j1) {
                  // The last panel's scale and bias are read 16 wide: copies padded with zeros.
                  float tail_scale[kPanel] = {}, tail_bias[kPanel] = {};
                  for (int64_t j = j0; j < j1; ++j) {
                    int64_t r = rb.row_of(j), rows = rb.row_of(j + 1) - r;
                    for (int64_t p = p0; p < p1; ++p) {
                      int64_t c0 = p * kPanel, cols = std::min(kPanel, n - c0);
                      const float *s = scale + c0, *b = bias ? bias + c0 : nullptr;
                      if (cols < kPanel) {
                        std::copy(s, s + cols, tail_scale);
                        if (b) std::copy(b, b + cols, tail_bias);
                        s = tail_scale;
                        b = b ? tail_bias : nullptr;
                      }
                      micro[rows](xq + r * kx, sx + r, kx, packed + p * bytes, s, b, cols,
                                  y + r * n + c0, n);
                    }
                  }
                });
}
}  // namespace

void quantize_rows_int8(const float* w, int64_t n, int64_t k, int8_t* q, float* scale) {
  for (int64_t c = 0; c < n; ++c) quantize_row(w + c * k, k, q + c * k, scale + c);
}

int64_t int8_packed_bytes(int64_t n, int64_t k, Isa isa) {
  return (n + kPanel - 1) / kPanel * panel_bytes(k, isa);
}

void pack_int8(const int8_t* q, int64_t n, int64_t k, Isa isa, int8_t* packed) {
  // Panels [kp / g, 16, g]: g = 2 (avx2) or 4 (portable, vnni) k values of an output side by
  // side; vnni's then int32 [16].
  int64_t kp = padded_k(k, isa), g = k_group(isa), panels = (n + kPanel - 1) / kPanel;
  for (int64_t p = 0; p < panels; ++p) {
    int8_t* panel = packed + p * panel_bytes(k, isa);
    for (int64_t i = 0; i < kp; ++i)
      for (int64_t c = 0; c < kPanel; ++c) {
        int64_t row = p * kPanel + c, at = (i / g) * g * kPanel + g * c + i % g;
        panel[at] = row < n && i < k ? q[row * k + i] : 0;
      }
    if (isa < Isa::avx512vnni) continue;
    for (int64_t c = 0; c < kPanel; ++c) {
      int64_t row = p * kPanel + c;
      int32_t shift = 0;  // |128 * sum| <= 128 * 127 * 2^17 < 2^31
      for (int64_t i = 0; row < n && i < k; ++i) shift += 128 * q[row * k + i];
      std::memcpy(panel + kPanel * kp + 4 * c, &shift, 4);
    }
  }
}

void linear_int8(const float* x, int64_t m, int64_t k, const int8_t* packed, const float* scale,
                 const float* bias, int64_t n, Isa isa, float* y) {
  if (m <= 0 || n <= 0) return;
  float* sx = scratch<float>(m);
  int64_t bytes = panel_bytes(k, isa);
  bool parallel = product_pays_for_threads(m, n, k, kMacsPerSecond[int(isa)]);
  if (isa >= Isa::avx512vnni) {
    int64_t k4 = padded_k(k, isa);
    uint8_t* xu = scratch<uint8_t>(m * k4);  // [m, k4]
    quantize_rows_vnni(x, m, k, k4, xu, sx);
    linear_panels(kMicroVnni, xu, sx, m, k4, packed, bytes, scale, bias, n, y, parallel);
    return;
  }
  if (isa == Isa::avx2) {
    int64_t kp = padded_k(k, isa);
    int16_t* xq = scratch<int16_t>(m * kp);  // [m, kp]
    quantize_rows_avx2(x, m, k, kp, xq, sx);
    linear_panels(kMicroAvx2, xq, sx, m, kp, packed, bytes, scale, bias, n, y, parallel);
    return;
  }
  int64_t k4 = padded_k(k, isa);
  int8_t* xq = scratch<int8_t>(m * k4);  // [m, k4]
#pragma omp parallel for schedule(static) if (m * k > (1 << 16))
  for (int64_t r = 0; r < m; ++r) {
    quantize_row(x + r * k, k, xq + r * k4, sx + r);
    std::fill(xq + r * k4 + k, xq + (r + 1) * k4, int8_t(0));
  }
  linear_panels(kMicroPortable, xq, sx, m, k4, packed, bytes, scale, bias, n, y, parallel);
}

}  // namespace qkv::ops::cpu
