// Rotary position embeddings (rotate-half layout), forward and backward: one thread per token
// and angle, which rotates that pair of elements in every head.
#include <cmath>
#include <numbers>

#include "ops/cuda/context.h"
#include "ops/kernel_registry.h"

namespace qkv::ops::cuda {

namespace {
// x, y [B, H, L, D], positions [B, L]; pairs = B * L * (D / 2). The angle of pair i of a token,
// position * freq.inverse(i, D), in double, reduced to [-pi, pi] there (so that float keeps its
// digits for any position), then its cos and sin in float. Forward: y = x rotated by the angle.
// Backward (x is dy, y is dx): y += x rotated by minus the angle.
template <bool kBackward>
__global__ void rope_kernel(const float* x, const int32_t* positions, int64_t heads, int64_t len,
                            int64_t dim, RopeFrequencies freq, int64_t pairs, float* y) {
  constexpr double kTwoPi = 2 * std::numbers::pi;
  const int64_t half = dim / 2;
  QKV_GRID_LOOP(k, pairs) {
    const int64_t token = k / half, i = k % half, b = token / len, l = token % len;
    double angle = double(positions[token]) * freq.inverse(i, dim);
    float reduced = float(angle - kTwoPi * rint(angle / kTwoPi));
    float cs = cosf(reduced), sn = sinf(reduced);
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t first = ((b * heads + h) * len + l) * dim + i, second = first + half;
      float x1 = x[first], x2 = x[second];
      if (kBackward) {
        y[first] += x1 * cs + x2 * sn;
        y[second] += x2 * cs - x1 * sn;
      } else {
        y[first] = x1 * cs - x2 * sn;
        y[second] = x2 * cs + x1 * sn;
      }
    }
  }
}
}  // namespace

void rope_forward(const float* x, const int32_t* positions, int64_t batch, int64_t heads,
                  int64_t len, int64_t dim, RopeFrequencies freq, float* y) {
  const int64_t pairs = batch * len * (dim / 2);
  if (pairs == 0 || heads == 0) return;
  rope_kernel<false>
      <<<grid_for(pairs), kThreads, 0, stream()>>>(x, positions, heads, len, dim, freq, pairs, y);
  check_launch("rope_forward");
}

void rope_backward(const float* dy, const int32_t* positions, int64_t batch, int64_t heads,
                   int64_t len, int64_t dim, RopeFrequencies freq, float* dx) {
  const int64_t pairs = batch * len * (dim / 2);
  if (pairs == 0 || heads == 0) return;
  rope_kernel<true>
      <<<grid_for(pairs), kThreads, 0, stream()>>>(dy, positions, heads, len, dim, freq, pairs, dx);
  check_launch("rope_backward");
}

QKV_REGISTER_KERNEL(rope_forward, Device::cuda, float, rope_forward);
QKV_REGISTER_KERNEL(rope_backward, Device::cuda, float, rope_backward);

}  // namespace qkv::ops::cuda
