// Elementwise activations (relu, exact GELU, tanh GELU, SiLU) and inverted dropout.
#include <algorithm>
#include <cmath>

#include "ops/cpu/parallel_min.h"
#include "ops/cpu/vec_math.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"

namespace qkv::ops::cpu {

namespace {
constexpr int64_t kParallelMinGelu = 1 << 13;  // GELU does more work per element
constexpr float kSqrt2OverPi = 0.79788456080286536f, kGeluCubic = 0.044715f;

// 1 / (1 + exp(-x)) without overflow: exp of -|x| only.
inline float sigmoid(float x) {
  float e = exp_approx(-std::fabs(x));
  float r = 1.f / (1.f + e);
  return select(x < 0.f, e * r, r);
}
}  // namespace

void activation_forward(Activation act, const float* x, float* y, int64_t n) {
  switch (act) {
    case Activation::relu:
#pragma omp parallel for simd schedule(static) if (n > kParallelMinElements)
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] < 0.f ? 0.f : x[i];
      break;
    case Activation::gelu:  // x * Phi(x)
#pragma omp parallel for simd schedule(static) if (n > kParallelMinGelu)
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] * normal_cdf_pdf(x[i]).cdf;
      break;
    case Activation::gelu_tanh:  // x/2 * (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
#pragma omp parallel for simd schedule(static) if (n > kParallelMinGelu)
      for (int64_t i = 0; i < n; ++i) {
        float u = kSqrt2OverPi * (x[i] + kGeluCubic * x[i] * x[i] * x[i]);
        y[i] = 0.5f * x[i] * (1.f + tanh_approx(u));
      }
      break;
    case Activation::silu:  // x * sigmoid(x)
#pragma omp parallel for simd schedule(static) if (n > kParallelMinGelu)
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] * sigmoid(x[i]);
      break;
  }
}

void activation_backward(Activation act, const float* dy, const float* x, float* dx, int64_t n) {
  switch (act) {
    case Activation::relu:
#pragma omp parallel for simd schedule(static) if (n > kParallelMinElements)
      for (int64_t i = 0; i < n; ++i) dx[i] += x[i] > 0.f ? dy[i] : 0.f;
      break;
    case Activation::gelu:  // d/dx x Phi(x) = Phi(x) + x phi(x)
#pragma omp parallel for simd schedule(static) if (n > kParallelMinGelu)
      for (int64_t i = 0; i < n; ++i) {
        NormalCdfPdf f = normal_cdf_pdf(x[i]);
        dx[i] += dy[i] * (f.cdf + x[i] * f.pdf);
      }
      break;
    case Activation::gelu_tanh:
#pragma omp parallel for simd schedule(static) if (n > kParallelMinGelu)
      for (int64_t i = 0; i < n; ++i) {
        float x2 = x[i] * x[i];
        float t = tanh_approx(kSqrt2OverPi * x[i] * (1.f + kGeluCubic * x2));
        float du = kSqrt2OverPi * (1.f + 3.f * kGeluCubic * x2);  // d(tanh argument)/dx
        dx[i] += dy[i] * (0.5f * (1.f + t) + 0.5f * x[i] * (1.f - t * t) * du);
      }
      break;
    case Activation::silu:  // d/dx x s(x) = s + x s (1 - s)
#pragma omp parallel for simd schedule(static) if (n > kParallelMinGelu)
      for (int64_t i = 0; i < n; ++i) {
        float s = sigmoid(x[i]);
        dx[i] += dy[i] * (s + x[i] * s * (1.f - s));
      }
      break;
  }
}

void dropout_forward(const float* x, float p, uint64_t seed, uint64_t base, uint8_t* mask, float* y,
                     int64_t n) {
  float keep_scale = 1.f / (1.f - p);
  if (p == 0.f) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMinElements)
    for (int64_t i = 0; i < n; ++i) {
      mask[i] = 1;
      y[i] = x[i];
    }
    return;
  }
  // Chunks of kChunk elements, each drawn with one vectorized call: element i takes the word
  // rng.bits(base, i) = rng.block(base + i / 4)[i % 4].
  constexpr int64_t kChunk = 256;
  const Rng rng(seed);
  uint64_t threshold = uint64_t(double(p) * 4294967296.0);
  int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (n > kParallelMinElements)
  for (int64_t k = 0; k < chunks; ++k) {
    int64_t begin = k * kChunk, len = std::min(kChunk, n - begin);
    uint32_t words[kChunk];
    rng.blocks(base + uint64_t(begin / 4), (len + 3) / 4, words);
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) {
      float keep = words[i] >= threshold ? 1.f : 0.f;
      mask[begin + i] = uint8_t(keep);
      y[begin + i] = x[begin + i] * (keep * keep_scale);
    }
  }
}

void dropout_backward(const float* dy, const uint8_t* mask, float p, float* dx, int64_t n) {
  float keep_scale = 1.f / (1.f - p);
#pragma omp parallel for simd schedule(static) if (n > kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) dx[i] += dy[i] * (float(mask[i]) * keep_scale);
}

QKV_REGISTER_KERNEL(activation_forward, Device::cpu, float, activation_forward);
QKV_REGISTER_KERNEL(activation_backward, Device::cpu, float, activation_backward);
QKV_REGISTER_KERNEL(dropout_forward, Device::cpu, float, dropout_forward);
QKV_REGISTER_KERNEL(dropout_backward, Device::cpu, float, dropout_backward);

}  // namespace qkv::ops::cpu
