// The Adam / AdamW update: checks, then the kernel of the parameter's device and dtype.
#include "ops/checks.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"

namespace qkv::ops {

void adam_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamParams& p,
                 float grad_scale) {
  const char* op = "adam_update";
  QKV_REQUIRE(grad.dtype() == param.dtype() && m.dtype() == DType::f32 && v.dtype() == DType::f32,
              op, "needs grad of the param's dtype and F32 moments");
  QKV_REQUIRE(
      grad.shape() == param.shape() && m.shape() == param.shape() && v.shape() == param.shape(), op,
      "param " + shape_str(param.shape()) + ", grad " + shape_str(grad.shape()) + ", m " +
          shape_str(m.shape()) + " and v " + shape_str(v.shape()) + " must match");
  QKV_REQUIRE(p.step >= 1, op, "step is 1-based, got " + std::to_string(p.step));
  QKV_REQUIRE(p.beta1 >= 0.f && p.beta1 < 1.f && p.beta2 >= 0.f && p.beta2 < 1.f, op,
              "betas must lie in [0, 1)");
  Device dev = common_device(op, {&param, &grad, &m, &v});
  dispatch<kernels::adam_update>(dev, param.dtype(), [&]<typename T>(auto* kernel) {
    kernel(param.data<T>(), grad.data<T>(), m.data<float>(), v.data<float>(), param.numel(), p,
           grad_scale);
  });
}

}  // namespace qkv::ops
