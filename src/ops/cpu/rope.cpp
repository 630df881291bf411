// Rotary position embeddings (rotate-half layout), forward and backward: per token, the cos and
// sin of its D / 2 angles once, then the rotation of every head.
#include <cmath>
#include <numbers>
#include <vector>

#include "ops/cpu/scratch.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"

namespace qkv::ops::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 15;  // elements; below this one thread is faster

// inv_freq [D / 2]: freq.inverse(i, D), in double. Kept per thread for the (freq, D) of its last
// call: a model asks for the same table at every layer and decoding step, which then allocates
// nothing.
const std::vector<double>& inverse_frequencies(const RopeFrequencies& freq, int64_t dim) {
  thread_local std::vector<double> table;
  thread_local RopeFrequencies table_freq{.theta = 0};
  if (freq != table_freq || int64_t(table.size()) != dim / 2) {
    table.resize(size_t(dim / 2));
    for (int64_t i = 0; i < dim / 2; ++i) table[size_t(i)] = freq.inverse(i, dim);
    table_freq = freq;
  }
  return table;
}

// cos_sin [2, half] for the token at `position`: the angle position * inv_freq[i] in double,
// reduced to [-pi, pi] there (so that float keeps its digits for any position), then cos and
// sin in float.
void token_cos_sin(int32_t position, const std::vector<double>& inv_freq, float* cos_sin) {
  constexpr double kTwoPi = 2 * std::numbers::pi;
  const int64_t half = int64_t(inv_freq.size());
  for (int64_t i = 0; i < half; ++i) {
    double angle = double(position) * inv_freq[size_t(i)];
    float reduced = float(angle - kTwoPi * std::rint(angle / kTwoPi));
    cos_sin[i] = std::cos(reduced);
    cos_sin[half + i] = std::sin(reduced);
  }
}

// x, y [B, H, L, D], positions [B, L]. Forward: y = the rotation of x by each angle. Backward
// (x is dy, y is dx): y += the rotation of x by minus each angle.
template <bool kBackward>
void rotate(const float* x, const int32_t* positions, int64_t batch, int64_t heads, int64_t len,
            int64_t dim, const RopeFrequencies& freq, float* y) {
  const int64_t half = dim / 2;
  const std::vector<double>& inv_freq = inverse_frequencies(freq, dim);  // [half]
#pragma omp parallel if (batch * heads * len * dim > kParallelMin)
  {
    float* cs = thread_scratch(size_t(dim));  // [2, half]: cos, then sin
    const float* sn = cs + half;
#pragma omp for schedule(static)
    for (int64_t token = 0; token < batch * len; ++token) {
      const int64_t b = token / len, l = token % len;
      token_cos_sin(positions[token], inv_freq, cs);
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t offset = ((b * heads + h) * len + l) * dim;
        const float* x1 = x + offset;  // [half]: the first half of the row
        const float* x2 = x1 + half;   // [half]: the second half
        float* y1 = y + offset;
        float* y2 = y1 + half;
        if constexpr (kBackward) {
#pragma omp simd
          for (int64_t i = 0; i < half; ++i) {
            y1[i] += x1[i] * cs[i] + x2[i] * sn[i];
            y2[i] += x2[i] * cs[i] - x1[i] * sn[i];
          }
        } else {
#pragma omp simd
          for (int64_t i = 0; i < half; ++i) {
            y1[i] = x1[i] * cs[i] - x2[i] * sn[i];
            y2[i] = x2[i] * cs[i] + x1[i] * sn[i];
          }
        }
      }
    }
  }
}
}  // namespace

void rope_forward(const float* x, const int32_t* positions, int64_t batch, int64_t heads,
                  int64_t len, int64_t dim, RopeFrequencies freq, float* y) {
  rotate<false>(x, positions, batch, heads, len, dim, freq, y);
}

void rope_backward(const float* dy, const int32_t* positions, int64_t batch, int64_t heads,
                   int64_t len, int64_t dim, RopeFrequencies freq, float* dx) {
  rotate<true>(dy, positions, batch, heads, len, dim, freq, dx);
}

QKV_REGISTER_KERNEL(rope_forward, Device::cpu, float, rope_forward);
QKV_REGISTER_KERNEL(rope_backward, Device::cpu, float, rope_backward);

}  // namespace qkv::ops::cpu
