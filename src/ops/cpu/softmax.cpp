// Softmax and log-softmax over the last axis. Each row subtracts its maximum before exp, so
// large inputs do not overflow; a row of only -inf (nothing allowed) gives zeros, not NaN.
#include <cmath>
#include <limits>

#include "ops/cpu/vec_math.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"

namespace qkv::ops::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 14;  // elements; below this one thread is faster

float row_max(const float* x, int64_t cols) {
  float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t c = 0; c < cols; ++c) m = x[c] > m ? x[c] : m;
  return m;
}

void zero_row(float* y, int64_t cols) {
  for (int64_t c = 0; c < cols; ++c) y[c] = 0.f;
}
}  // namespace

void softmax_forward(const float* x, int64_t rows, int64_t cols, float* y) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;  // [cols]
    float* yr = y + r * cols;        // [cols]
    float m = row_max(xr, cols);
    if (m == -std::numeric_limits<float>::infinity()) {
      zero_row(yr, cols);
      continue;
    }
    float sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int64_t c = 0; c < cols; ++c) {
      yr[c] = exp_approx(xr[c] - m);
      sum += yr[c];
    }
    float inv = 1.f / sum;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) yr[c] *= inv;
  }
}

// dx += y * (dy - sum(dy * y)). When y is nearly one-hot (large inputs), dy - sum(dy * y) is tiny
// at the peak, and the rounding of the stored y (1 - y_peak is off by up to 6e-8) would swamp
// it. So y is treated as unnormalized weights w with total s = sum(w):
//   dx = w/s * (dy - sum(w dy)/s) = w * (dy * s - sum(w dy)) / s^2,
// evaluated in double, where the peak's w * dy cancels exactly; each dx then has the relative
// accuracy of its own w. A row of zeros (all -inf input) gets no gradient.
void softmax_backward(const float* dy, const float* y, int64_t rows, int64_t cols, float* dx) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const float* dyr = dy + r * cols;  // [cols]
    const float* yr = y + r * cols;    // [cols]
    float* dxr = dx + r * cols;        // [cols]
    double dot = 0.0, total = 0.0;
#pragma omp simd reduction(+ : dot, total)
    for (int64_t c = 0; c < cols; ++c) {
      dot += double(dyr[c]) * double(yr[c]);
      total += double(yr[c]);
    }
    if (total == 0.0) continue;
    double inv_total2 = 1.0 / (total * total);
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c)
      dxr[c] += float(double(yr[c]) * (double(dyr[c]) * total - dot) * inv_total2);
  }
}

// y = x - max - log(sum(exp(x - max))); entries of -inf stay -inf.
void log_softmax_forward(const float* x, int64_t rows, int64_t cols, float* y) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;  // [cols]
    float* yr = y + r * cols;        // [cols]
    float m = row_max(xr, cols);
    if (m == -std::numeric_limits<float>::infinity()) {
      zero_row(yr, cols);
      continue;
    }
    float sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int64_t c = 0; c < cols; ++c) sum += exp_approx(xr[c] - m);
    float log_sum = std::log(sum);
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) yr[c] = (xr[c] - m) - log_sum;
  }
}

// y = max + log(sum(exp(x - max))), with the exact exp (a loss, not an activation).
void logsumexp_forward(const float* x, int64_t rows, int64_t cols, float* y) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;  // [cols]
    float m = row_max(xr, cols);
    if (m == -std::numeric_limits<float>::infinity()) {
      y[r] = m;
      continue;
    }
    double sum = 0.0;
    for (int64_t c = 0; c < cols; ++c) sum += std::exp(double(xr[c] - m));
    y[r] = m + float(std::log(sum));
  }
}

// dx += dy * exp(x - y); a row of only -inf gets no gradient.
void logsumexp_backward(const float* dy, const float* x, const float* y, int64_t rows, int64_t cols,
                        float* dx) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    if (y[r] == -std::numeric_limits<float>::infinity()) continue;
    for (int64_t c = 0; c < cols; ++c)
      dx[r * cols + c] += dy[r] * float(std::exp(double(x[r * cols + c]) - double(y[r])));
  }
}

QKV_REGISTER_KERNEL(softmax_forward, Device::cpu, float, softmax_forward);
QKV_REGISTER_KERNEL(softmax_backward, Device::cpu, float, softmax_backward);
QKV_REGISTER_KERNEL(log_softmax_forward, Device::cpu, float, log_softmax_forward);
QKV_REGISTER_KERNEL(logsumexp_forward, Device::cpu, float, logsumexp_forward);
QKV_REGISTER_KERNEL(logsumexp_backward, Device::cpu, float, logsumexp_backward);

}  // namespace qkv::ops::cpu
