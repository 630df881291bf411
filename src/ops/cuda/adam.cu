// Adam / AdamW step, one fused elementwise pass (the arithmetic of ops/cpu/adam.cpp).
#include <cmath>

#include "ops/cuda/context.h"
#include "ops/kernel_registry.h"

namespace qkv::ops::cuda {

namespace {
__global__ void adam_kernel(float* param, const float* grad, float* m, float* v, int64_t n,
                            float b1, float b2, float eps, float step_size, float inv_sqrt_c2,
                            float decay, float grad_scale) {
  QKV_GRID_LOOP(i, n) {
    float g = grad[i] * grad_scale;
    float mi = b1 * m[i] + (1.f - b1) * g;
    float vi = b2 * v[i] + (1.f - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = param[i] * decay - step_size * mi / (sqrtf(vi) * inv_sqrt_c2 + eps);
  }
}
}  // namespace

void adam_update(float* param, const float* grad, float* m, float* v, int64_t n,
                 const AdamParams& p, float grad_scale) {
  if (n == 0) return;
  // Bias corrections on the host in double, as the CPU computes them.
  const double correction1 = 1.0 - std::pow(double(p.beta1), double(p.step));
  const double correction2 = 1.0 - std::pow(double(p.beta2), double(p.step));
  const float step_size = float(p.lr / correction1);
  const float inv_sqrt_c2 = float(1.0 / std::sqrt(correction2));
  const float decay = 1.f - p.lr * p.weight_decay;
  adam_kernel<<<grid_for(n), kThreads, 0, stream()>>>(param, grad, m, v, n, p.beta1, p.beta2, p.eps,
                                                      step_size, inv_sqrt_c2, decay, grad_scale);
  check_launch("adam_update");
}

QKV_REGISTER_KERNEL(adam_update, Device::cuda, float, adam_update);

}  // namespace qkv::ops::cuda
