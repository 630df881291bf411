// Elementwise activations (relu, exact GELU, tanh GELU, SiLU) and inverted dropout.
#include "ops/cuda/context.h"
#include "ops/kernel_registry.h"

namespace qkv::ops::cuda {

namespace {
constexpr float kSqrt2OverPi = 0.79788456080286536f, kGeluCubic = 0.044715f;
constexpr float kInvSqrt2 = 0.70710678118654752f, kInvSqrt2Pi = 0.39894228040143268f;

// 1 / (1 + exp(-x)) without overflow: exp of -|x| only.
__device__ float sigmoid(float x) {
  float e = expf(-fabsf(x));
  float r = 1.f / (1.f + e);
  return x < 0.f ? e * r : r;
}

__device__ float activation(Activation act, float x) {
  switch (act) {
    case Activation::relu:
      return x < 0.f ? 0.f : x;
    case Activation::gelu:  // x * Phi(x)
      return x * 0.5f * erfcf(-x * kInvSqrt2);
    case Activation::gelu_tanh:  // x/2 * (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
      return 0.5f * x * (1.f + tanhf(kSqrt2OverPi * (x + kGeluCubic * x * x * x)));
    case Activation::silu:  // x * sigmoid(x)
      return x * sigmoid(x);
  }
  return 0.f;
}

// d activation / dx at x.
__device__ float activation_slope(Activation act, float x) {
  switch (act) {
    case Activation::relu:
      return x > 0.f ? 1.f : 0.f;
    case Activation::gelu:  // Phi(x) + x phi(x)
      return 0.5f * erfcf(-x * kInvSqrt2) + x * kInvSqrt2Pi * expf(-0.5f * x * x);
    case Activation::gelu_tanh: {
      float x2 = x * x;
      float t = tanhf(kSqrt2OverPi * x * (1.f + kGeluCubic * x2));
      float du = kSqrt2OverPi * (1.f + 3.f * kGeluCubic * x2);  // d(tanh argument)/dx
      return 0.5f * (1.f + t) + 0.5f * x * (1.f - t * t) * du;
    }
    case Activation::silu: {  // s + x s (1 - s)
      float s = sigmoid(x);
      return s + x * s * (1.f - s);
    }
  }
  return 0.f;
}

__global__ void activation_forward_kernel(Activation act, const float* x, float* y, int64_t n) {
  QKV_GRID_LOOP(i, n) y[i] = activation(act, x[i]);
}

__global__ void activation_backward_kernel(Activation act, const float* dy, const float* x,
                                           float* dx, int64_t n) {
  QKV_GRID_LOOP(i, n) {
    if (act == Activation::relu)  // as the CPU: dy where x > 0, never dy * 0 (NaN stays out)
      dx[i] += x[i] > 0.f ? dy[i] : 0.f;
    else
      dx[i] += dy[i] * activation_slope(act, x[i]);
  }
}

// Philox4x32-10 of one counter block, exactly as Rng::block (tensor/rng.cpp).
__device__ uint4 philox_block(uint64_t counter, uint64_t seed) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  uint32_t c0 = uint32_t(counter), c1 = uint32_t(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0 = __umulhi(kM0, c0), lo0 = kM0 * c0;
    uint32_t hi1 = __umulhi(kM1, c2), lo1 = kM1 * c2;
    uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c1 = lo1;
    c3 = lo0;
    c0 = n0;
    c2 = n2;
    k0 += kW0;
    k1 += kW1;
  }
  return make_uint4(c0, c1, c2, c3);
}

// Thread b draws counter block base + b and handles elements 4b .. 4b + 3: element i keeps
// when Rng::bits(base, i) = block(base + i / 4)[i % 4] >= threshold.
__global__ void dropout_forward_kernel(const float* x, float keep_scale, uint64_t threshold,
                                       uint64_t seed, uint64_t base, uint8_t* mask, float* y,
                                       int64_t n) {
  QKV_GRID_LOOP(b, (n + 3) / 4) {
    uint4 w = philox_block(base + uint64_t(b), seed);
    uint32_t words[4] = {w.x, w.y, w.z, w.w};
    for (int j = 0; j < 4; ++j) {
      int64_t i = 4 * b + j;
      if (i >= n) break;
      float keep = words[j] >= threshold ? 1.f : 0.f;
      mask[i] = uint8_t(keep);
      y[i] = x[i] * (keep * keep_scale);
    }
  }
}

__global__ void keep_all_kernel(const float* x, uint8_t* mask, float* y, int64_t n) {
  QKV_GRID_LOOP(i, n) {
    mask[i] = 1;
    y[i] = x[i];
  }
}

__global__ void dropout_backward_kernel(const float* dy, const uint8_t* mask, float keep_scale,
                                        float* dx, int64_t n) {
  QKV_GRID_LOOP(i, n) dx[i] += dy[i] * (float(mask[i]) * keep_scale);
}
}  // namespace

void activation_forward(Activation act, const float* x, float* y, int64_t n) {
  if (n == 0) return;
  activation_forward_kernel<<<grid_for(n), kThreads, 0, stream()>>>(act, x, y, n);
  check_launch("activation_forward");
}

void activation_backward(Activation act, const float* dy, const float* x, float* dx, int64_t n) {
  if (n == 0) return;
  activation_backward_kernel<<<grid_for(n), kThreads, 0, stream()>>>(act, dy, x, dx, n);
  check_launch("activation_backward");
}

void dropout_forward(const float* x, float p, uint64_t seed, uint64_t base, uint8_t* mask, float* y,
                     int64_t n) {
  if (n == 0) return;
  if (p == 0.f) {
    keep_all_kernel<<<grid_for(n), kThreads, 0, stream()>>>(x, mask, y, n);
  } else {
    uint64_t threshold = uint64_t(double(p) * 4294967296.0);  // as cpu::dropout_forward
    dropout_forward_kernel<<<grid_for((n + 3) / 4), kThreads, 0, stream()>>>(
        x, 1.f / (1.f - p), threshold, seed, base, mask, y, n);
  }
  check_launch("dropout_forward");
}

void dropout_backward(const float* dy, const uint8_t* mask, float p, float* dx, int64_t n) {
  if (n == 0) return;
  dropout_backward_kernel<<<grid_for(n), kThreads, 0, stream()>>>(dy, mask, 1.f / (1.f - p), dx, n);
  check_launch("dropout_backward");
}

QKV_REGISTER_KERNEL(activation_forward, Device::cuda, float, activation_forward);
QKV_REGISTER_KERNEL(activation_backward, Device::cuda, float, activation_backward);
QKV_REGISTER_KERNEL(dropout_forward, Device::cuda, float, dropout_forward);
QKV_REGISTER_KERNEL(dropout_backward, Device::cuda, float, dropout_backward);

}  // namespace qkv::ops::cuda
