// Fused log-softmax + label-smoothed cross-entropy over rows of logits [n, vocab].
#include <algorithm>
#include <cmath>

#include "ops/cpu/vec_math.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"

namespace qkv::ops::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 14;  // elements
}

void cross_entropy_forward(const float* logits, const int32_t* targets, int64_t n, int64_t vocab,
                           int ignore_index, float label_smoothing, float* loss, float* lse) {
  const float eps = label_smoothing;
#pragma omp parallel for schedule(static) if (n * vocab > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    if (targets[i] == ignore_index) {
      loss[i] = lse[i] = 0.f;
      continue;
    }
    const float* x = logits + i * vocab;
    float max = max_of(x, vocab, -INFINITY);
    float sum_exp = 0.f, sum_x = 0.f;
#pragma omp simd reduction(+ : sum_exp, sum_x)
    for (int64_t j = 0; j < vocab; ++j) {
      sum_exp += exp_approx(x[j] - max);
      sum_x += x[j];
    }
    float row_lse = max + std::log(sum_exp);
    lse[i] = row_lse;
    // (1-eps) (lse - x_t) + eps (lse - mean x)
    loss[i] = row_lse - (1.f - eps) * x[targets[i]] - eps * (sum_x / float(vocab));
  }
}

void cross_entropy_backward(const float* dloss, const float* logits, const int32_t* targets,
                            int64_t n, int64_t vocab, int ignore_index, float label_smoothing,
                            const float* lse, float* dlogits) {
  const float smooth = label_smoothing / float(vocab);
#pragma omp parallel for schedule(static) if (n * vocab > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    if (targets[i] == ignore_index) continue;
    const float* x = logits + i * vocab;
    float* dx = dlogits + i * vocab;
    float g = dloss[i], row_lse = lse[i];
#pragma omp simd
    for (int64_t j = 0; j < vocab; ++j) dx[j] += g * (exp_approx(x[j] - row_lse) - smooth);
    dx[targets[i]] -= g * (1.f - label_smoothing);
  }
}

QKV_REGISTER_KERNEL(cross_entropy_forward, Device::cpu, float, cross_entropy_forward);
QKV_REGISTER_KERNEL(cross_entropy_backward, Device::cpu, float, cross_entropy_backward);

}  // namespace qkv::ops::cpu
