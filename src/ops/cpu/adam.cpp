// Adam / AdamW step, one fused pass over the parameter.
#include <cmath>

#include "ops/kernel_registry.h"
#include "ops/kernels.h"

namespace qkv::ops::cpu {

void adam_update(float* param, const float* grad, float* m, float* v, int64_t n,
                 const AdamParams& p, float grad_scale) {
  // Bias corrections in double: beta^step underflows gracefully, 1 - beta^step stays exact.
  const double correction1 = 1.0 - std::pow(double(p.beta1), double(p.step));
  const double correction2 = 1.0 - std::pow(double(p.beta2), double(p.step));
  const float step_size = float(p.lr / correction1);
  const float inv_sqrt_c2 = float(1.0 / std::sqrt(correction2));
  const float decay = 1.f - p.lr * p.weight_decay;  // AdamW: param -= lr * wd * param
  const float b1 = p.beta1, b2 = p.beta2, eps = p.eps;
#pragma omp parallel for simd schedule(static) if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) {
    float g = grad[i] * grad_scale;
    float mi = b1 * m[i] + (1.f - b1) * g;
    float vi = b2 * v[i] + (1.f - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = param[i] * decay - step_size * mi / (std::sqrt(vi) * inv_sqrt_c2 + eps);
  }
}

QKV_REGISTER_KERNEL(adam_update, Device::cpu, float, adam_update);

}  // namespace qkv::ops::cpu
