// LayerNorm over the last axis, forward and backward.
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/cpu/parallel_min.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"

namespace qkv::ops::cpu {

namespace {
// The backward pass sums dgamma and dbeta over rows in chunks of rows fixed by the row count
// alone (not the thread count), then adds the chunks in order: reproducible for any thread count.
constexpr int64_t kMaxChunks = 64, kMinChunkRows = 8;
}  // namespace

void layer_norm_forward(const float* x, const float* gamma, const float* beta, float eps,
                        int64_t rows, int64_t d, float* y, float* mean, float* rstd) {
#pragma omp parallel for schedule(static) if (rows * d > kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;  // [d]
    float* yr = y + r * d;        // [d]
    float sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int64_t c = 0; c < d; ++c) sum += xr[c];
    float mu = sum / float(d);
    float squares = 0.f;  // two passes: no cancellation when |mean| >> std
#pragma omp simd reduction(+ : squares)
    for (int64_t c = 0; c < d; ++c) squares += (xr[c] - mu) * (xr[c] - mu);
    float rs = 1.f / std::sqrt(squares / float(d) + eps);
#pragma omp simd
    for (int64_t c = 0; c < d; ++c) yr[c] = (xr[c] - mu) * rs * gamma[c] + beta[c];
    mean[r] = mu;
    rstd[r] = rs;
  }
}

// Per row, with xhat = (x - mean) * rstd and g = dy * gamma:
//   dx += rstd * (g - mean(g) - xhat * mean(g * xhat)),  dgamma += dy * xhat,  dbeta += dy.
void layer_norm_backward(const float* dy, const float* x, const float* gamma, const float* mean,
                         const float* rstd, int64_t rows, int64_t d, float* dx, float* dgamma,
                         float* dbeta) {
  int64_t chunks = std::clamp<int64_t>(rows / kMinChunkRows, 1, kMaxChunks);
  bool want_params = dgamma || dbeta;
  // [chunks, 2, d]: each chunk's partial dgamma, then dbeta.
  std::vector<float> partial(want_params ? size_t(chunks * 2 * d) : 0, 0.f);
#pragma omp parallel for schedule(static) if (rows * d > kParallelMinElements)
  for (int64_t k = 0; k < chunks; ++k) {
    float* pg = want_params ? partial.data() + k * 2 * d : nullptr;
    float* pb = want_params ? pg + d : nullptr;
    for (int64_t r = rows * k / chunks; r < rows * (k + 1) / chunks; ++r) {
      const float* xr = x + r * d;    // [d]
      const float* dyr = dy + r * d;  // [d]
      float mu = mean[r], rs = rstd[r];
      float sum_g = 0.f, sum_gx = 0.f;
#pragma omp simd reduction(+ : sum_g, sum_gx)
      for (int64_t c = 0; c < d; ++c) {
        float g = dyr[c] * gamma[c];
        sum_g += g;
        sum_gx += g * (xr[c] - mu) * rs;
      }
      if (want_params) {
#pragma omp simd
        for (int64_t c = 0; c < d; ++c) {
          pg[c] += dyr[c] * (xr[c] - mu) * rs;
          pb[c] += dyr[c];
        }
      }
      if (dx) {
        float* dxr = dx + r * d;  // [d]
        float mean_g = sum_g / float(d), mean_gx = sum_gx / float(d);
#pragma omp simd
        for (int64_t c = 0; c < d; ++c)
          dxr[c] += rs * (dyr[c] * gamma[c] - mean_g - (xr[c] - mu) * rs * mean_gx);
      }
    }
  }
  for (int64_t k = 0; k < chunks && want_params; ++k) {
    const float* pg = partial.data() + k * 2 * d;
    const float* pb = pg + d;
    if (dgamma) {
#pragma omp simd
      for (int64_t c = 0; c < d; ++c) dgamma[c] += pg[c];
    }
    if (dbeta) {
#pragma omp simd
      for (int64_t c = 0; c < d; ++c) dbeta[c] += pb[c];
    }
  }
}

QKV_REGISTER_KERNEL(layer_norm_forward, Device::cpu, float, layer_norm_forward);
QKV_REGISTER_KERNEL(layer_norm_backward, Device::cpu, float, layer_norm_backward);

}  // namespace qkv::ops::cpu
