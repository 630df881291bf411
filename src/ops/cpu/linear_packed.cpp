// The linear layer for few rows (a decoding step: one row per sentence or beam), on a weight
// packed once, and for many rows on a small weight (a ViT's training step). The BLAS repacks the
// whole weight on every call, which costs about as much as the product itself when there are
// only a few rows; with many, it also packs the rows and, without beta 1, zeroes the output.
// Packed, the weight is a row of panels of 16 outputs, each [in, 16]; a micro-kernel keeps 6 rows x
// 16 outputs in 12 vector registers and adds x[r, i] * panel[i, :] for every i. GCC's vector
// extension makes the vectors AVX (8 floats) where the target has it and pairs of SSE registers
// otherwise. On a CPU with AVX-512 (cpu_isa() from avx512vnni up) a pass takes two panels and up to
// 12 rows, each row's 32 outputs in two registers of 16 floats: the same products summed in the
// same order.
#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "ops/cpu/fork_cost.h"
#include "ops/cpu/low_precision.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"

// Without AVX (portable builds) GCC warns that these 32-byte vectors would pass between files
// differently; they never leave this file.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace qkv::ops::cpu {

namespace {
constexpr int64_t kRows = 6;
constexpr int64_t kParallelMin = 1 << 19;  // multiply-adds below which one thread is faster
// What linear_packed asks threads_pay_off with: multiply-adds per second of one thread (its
// few-row products on the 2-core Zen 4, near the f32 FMA peak).
constexpr double kMacsPerSecond = 50e9;
constexpr int64_t kChunkFloats = 1 << 12;  // of x per chunk of rows (16 KiB: half the L1 cache)
typedef float Vec8 __attribute__((vector_size(8 * sizeof(float))));
typedef float Vec16 __attribute__((vector_size(16 * sizeof(float))));

// v = s in every lane (an initializer list, which GCC makes one broadcast).
[[gnu::always_inline]] inline void splat(float s, Vec8& v) {
  v = Vec8{s, s, s, s, s, s, s, s};
}
[[gnu::always_inline]] inline void splat(float s, Vec16& v) {
  v = Vec16{s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s};
}

// acc[r][j] += x[r, i] * (the j-th vector of row i of P panels) for R rows of x (row stride k);
// panel p at panel + p * k * 16, each of its rows N / P vectors V.
template <typename V, int R, int P, int N>
[[gnu::always_inline]] inline void step(const float* x, int64_t k, const float* panel, int64_t i,
                                        V (&acc)[R][N]) {
  constexpr int kLanes = sizeof(V) / sizeof(float), kPerPanel = kLinearPanel / kLanes;
  V w[N];
  for (int j = 0; j < N; ++j)
    std::memcpy(&w[j], panel + ((j / kPerPanel) * k + i) * kLinearPanel + j % kPerPanel * kLanes,
                sizeof(V));
  for (int r = 0; r < R; ++r) {
    V xv;
    splat(x[r * k + i], xv);
    for (int j = 0; j < N; ++j) acc[r][j] += xv * w[j];
  }
}

// y[r, :cols] = bias[:cols] + x[r, :] @ panels[:, :cols] for R rows, or y[r, :cols] += the
// product (accumulate; bias null); x [R, k] (row stride k), P panels [k, 16] (cols up to 16 P), y
// with row stride ldy, bias null or [cols]. Each output's products are summed in the same order
// whatever V and P.
template <typename V, int R, int P>
[[gnu::always_inline]] inline void micro_body(const float* x, int64_t k, const float* panel,
                                              const float* bias, int64_t cols, bool accumulate,
                                              float* y, int64_t ldy) {
  constexpr int kLanes = sizeof(V) / sizeof(float);
  constexpr int N = P * kLinearPanel / kLanes;  // vectors per row
  // With few rows the adds would wait on each other: U steps of i go to separate sums.
  constexpr int U = R == 1 ? 4 : R == 2 ? 2 : 1;
  V part[U][R][N];
  // Each sum zeroed on its own: `= {}` made GCC also memset a copy of the array on the stack.
  for (int u = 0; u < U; ++u)
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < N; ++j) part[u][r][j] = V{};
  int64_t i = 0;
  for (; i + U <= k; i += U)
    for (int u = 0; u < U; ++u) step<V, R, P>(x, k, panel, i + u, part[u]);
  for (; i < k; ++i) step<V, R, P>(x, k, panel, i, part[0]);
  for (int r = 0; r < R; ++r) {
    float out[P * kLinearPanel];
    for (int j = 0; j < N; ++j) {
      V sum = part[0][r][j];
      for (int u = 1; u < U; ++u) sum += part[u][r][j];
      std::memcpy(out + j * kLanes, &sum, sizeof(V));
    }
    float* yr = y + r * ldy;
    if (accumulate)
      for (int64_t c = 0; c < cols; ++c) yr[c] += out[c];
    else
      for (int64_t c = 0; c < cols; ++c) yr[c] = out[c] + (bias ? bias[c] : 0.f);
  }
}

// One panel in 8-float vectors (AVX where the build targets it).
template <int R>
void micro(const float* x, int64_t k, const float* panel, const float* bias, int64_t cols,
           bool accumulate, float* y, int64_t ldy) {
  micro_body<Vec8, R, 1>(x, k, panel, bias, cols, accumulate, y, ldy);
}

// P panels in AVX-512 registers: the same bits as micro() where the build's vectors have FMA.
template <int R, int P>
__attribute__((target("avx512f,fma"))) void micro_avx512(const float* x, int64_t k,
                                                         const float* panel, const float* bias,
                                                         int64_t cols, bool accumulate, float* y,
                                                         int64_t ldy) {
  micro_body<Vec16, R, P>(x, k, panel, bias, cols, accumulate, y, ldy);
}

using Micro = void (*)(const float*, int64_t, const float*, const float*, int64_t, bool, float*,
                       int64_t);
constexpr Micro kMicro[kRows + 1] = {nullptr,  micro<1>, micro<2>, micro<3>,
                                     micro<4>, micro<5>, micro<6>};
// AVX-512's 32 registers hold the sums of 12 rows of a pass of two panels.
constexpr int64_t kRowsAvx512 = 12;
template <int P, int... R>
constexpr std::array<Micro, kRowsAvx512 + 1> micros_avx512(std::integer_sequence<int, 0, R...>) {
  return {nullptr, micro_avx512<R, P>...};
}
// [panels in the pass - 1][rows]
constexpr std::array<Micro, kRowsAvx512 + 1> kMicroAvx512[2] = {
    micros_avx512<1>(std::make_integer_sequence<int, kRowsAvx512 + 1>()),
    micros_avx512<2>(std::make_integer_sequence<int, kRowsAvx512 + 1>())};
}  // namespace

void pack_linear_weight(const float* w, int64_t n, int64_t k, float* packed) {
  int64_t panels = (n + kLinearPanel - 1) / kLinearPanel;
#pragma omp parallel for schedule(static) if (n * k > kParallelMin)
  for (int64_t p = 0; p < panels; ++p) {
    float* panel = packed + p * k * kLinearPanel;  // [k, 16]
    int64_t rows = std::min(kLinearPanel, n - p * kLinearPanel);
    const float* wp = w + p * kLinearPanel * k;  // [rows, k]
    for (int64_t i = 0; i < k; ++i)
      for (int64_t c = 0; c < kLinearPanel; ++c)
        panel[i * kLinearPanel + c] = c < rows ? wp[c * k + i] : 0.f;
  }
}

void linear_f32_packed(const float* x, const float* packed, const float* bias, int64_t m, int64_t n,
                       int64_t k, Isa isa, bool accumulate, float* y) {
  int64_t panels = (n + kLinearPanel - 1) / kLinearPanel;
  int64_t per_pass = isa >= Isa::avx512vnni ? 2 : 1;
  int64_t passes = (panels + per_pass - 1) / per_pass;
  int64_t max_rows = per_pass == 1 ? kRows : kRowsAvx512;
  if (m == 0) return;
  // Many rows go in chunks that fit the L1 cache, each chunk against every pass of panels
  // (tasks chunk-major: a thread's run of tasks reuses its chunk); few rows make one chunk.
  int64_t chunk_rows = m;
  if (m > kPackedRowsMax)
    chunk_rows = std::max<int64_t>(1, kChunkFloats / std::max<int64_t>(k, 1) / max_rows) * max_rows;
  int64_t chunks = (m + chunk_rows - 1) / chunk_rows;
#pragma omp parallel for schedule(static) if (product_pays_for_threads(m, n, k, kMacsPerSecond))
  for (int64_t task = 0; task < chunks * passes; ++task) {
    int64_t g = task % passes, r0 = task / passes * chunk_rows;
    int64_t m_chunk = std::min(chunk_rows, m - r0);
    const float* panel = packed + g * per_pass * k * kLinearPanel;  // [per_pass, k, 16]
    int64_t c0 = g * per_pass * kLinearPanel, cols = std::min(per_pass * kLinearPanel, n - c0);
    const float* b = bias ? bias + c0 : nullptr;
    const Micro* micro = per_pass == 1 ? kMicro : kMicroAvx512[cols > kLinearPanel].data();
    // Rows in blocks of nearly equal size (32 = 6 6 5 5 5 5, not 6 6 6 6 6 2): a small block
    // runs the micro-kernel at a fraction of its speed.
    int64_t blocks = (m_chunk + max_rows - 1) / max_rows;
    for (int64_t j = 0, r = r0; j < blocks; ++j) {
      int64_t rows = m_chunk / blocks + (j < m_chunk % blocks);
      micro[rows](x + r * k, k, panel, b, cols, accumulate, y + r * n + c0, n);
      r += rows;
    }
  }
}

namespace {
void linear_packed(const float* x, const float* packed, const float* bias, int64_t m, int64_t n,
                   int64_t k, bool accumulate, float* y) {
  linear_f32_packed(x, packed, bias, m, n, k, cpu_isa(), accumulate, y);
}
}  // namespace

QKV_REGISTER_KERNEL(pack_linear_weight, Device::cpu, float, pack_linear_weight);
QKV_REGISTER_KERNEL(linear_packed, Device::cpu, float, linear_packed);

}  // namespace qkv::ops::cpu
