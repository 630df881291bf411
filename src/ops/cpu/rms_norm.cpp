// RMSNorm over the last axis, forward and backward.
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/cpu/parallel_min.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"

namespace qkv::ops::cpu {

namespace {
// The backward pass sums dgamma over rows in chunks of rows fixed by the row count alone (not
// the thread count), then adds the chunks in order: reproducible for any thread count.
constexpr int64_t kMaxChunks = 64, kMinChunkRows = 8;
}  // namespace

void rms_norm_forward(const float* x, const float* gamma, float eps, int64_t rows, int64_t d,
                      float* y, float* rstd) {
#pragma omp parallel for schedule(static) if (rows * d > kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;  // [d]
    float* yr = y + r * d;        // [d]
    float squares = 0.f;
#pragma omp simd reduction(+ : squares)
    for (int64_t c = 0; c < d; ++c) squares += xr[c] * xr[c];
    float rs = 1.f / std::sqrt(squares / float(d) + eps);
#pragma omp simd
    for (int64_t c = 0; c < d; ++c) yr[c] = xr[c] * rs * gamma[c];
    rstd[r] = rs;
  }
}

// Per row, with xhat = x * rstd and g = dy * gamma:
//   dx += rstd * (g - xhat * mean(g * xhat)),  dgamma += dy * xhat.
void rms_norm_backward(const float* dy, const float* x, const float* gamma, const float* rstd,
                       int64_t rows, int64_t d, float* dx, float* dgamma) {
  int64_t chunks = std::clamp<int64_t>(rows / kMinChunkRows, 1, kMaxChunks);
  // [chunks, d]: each chunk's partial dgamma.
  std::vector<float> partial(dgamma ? size_t(chunks * d) : 0, 0.f);
#pragma omp parallel for schedule(static) if (rows * d > kParallelMinElements)
  for (int64_t k = 0; k < chunks; ++k) {
    float* pg = dgamma ? partial.data() + k * d : nullptr;  // [d]
    for (int64_t r = rows * k / chunks; r < rows * (k + 1) / chunks; ++r) {
      const float* xr = x + r * d;    // [d]
      const float* dyr = dy + r * d;  // [d]
      float rs = rstd[r];
      if (pg) {
#pragma omp simd
        for (int64_t c = 0; c < d; ++c) pg[c] += dyr[c] * xr[c] * rs;
      }
      if (dx) {
        float sum_gx = 0.f;
#pragma omp simd reduction(+ : sum_gx)
        for (int64_t c = 0; c < d; ++c) sum_gx += dyr[c] * gamma[c] * xr[c] * rs;
        float* dxr = dx + r * d;  // [d]
        float mean_gx = sum_gx / float(d);
#pragma omp simd
        for (int64_t c = 0; c < d; ++c) dxr[c] += rs * (dyr[c] * gamma[c] - xr[c] * rs * mean_gx);
      }
    }
  }
  for (int64_t k = 0; k < chunks && dgamma; ++k) {
    const float* pg = partial.data() + k * d;  // [d]
#pragma omp simd
    for (int64_t c = 0; c < d; ++c) dgamma[c] += pg[c];
  }
}

QKV_REGISTER_KERNEL(rms_norm_forward, Device::cpu, float, rms_norm_forward);
QKV_REGISTER_KERNEL(rms_norm_backward, Device::cpu, float, rms_norm_backward);

}  // namespace qkv::ops::cpu
