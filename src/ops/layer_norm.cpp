// LayerNorm over the last axis: shape checks, then the device's kernel.
#include "ops/cpu/kernels.h"
#include "ops/cuda/kernels.h"
#include "ops/dispatch.h"

namespace qkv::ops {

namespace {
void check_params(const char* op, const Tensor& x, const Tensor& gamma) {
  QKV_REQUIRE(x.rank() >= 1 && x.dtype() == DType::f32, op,
              "x must be F32 [..., d], got " + shape_str(x.shape()));
  QKV_REQUIRE(gamma.shape() == Shape{x.size(-1)} && gamma.dtype() == DType::f32, op,
              "gamma is " + shape_str(gamma.shape()) + ", expected F32 [" +
                  std::to_string(x.size(-1)) + "] for x " + shape_str(x.shape()));
}
}  // namespace

Tensor layer_norm_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps,
                          Tensor& mean, Tensor& rstd) {
  check_params("layer_norm", x, gamma);
  QKV_REQUIRE(beta.shape() == gamma.shape() && beta.dtype() == DType::f32, "layer_norm",
              "beta is " + shape_str(beta.shape()) + ", expected F32 " + shape_str(gamma.shape()));
  QKV_REQUIRE(eps >= 0.f, "layer_norm", "eps must be >= 0, got " + std::to_string(eps));
  Device dev = common_device("layer_norm", {&x, &gamma, &beta});
  int64_t rows = rows_of(x), d = x.size(-1);
  Tensor y = Tensor::empty(x.shape(), DType::f32, dev);  // [..., d]
  mean = Tensor::empty({rows}, DType::f32, dev);
  rstd = Tensor::empty({rows}, DType::f32, dev);
  if (dev == Device::cuda)
    QKV_CUDA_KERNEL(
        "layer_norm",
        cuda::layer_norm_forward(x.data<float>(), gamma.data<float>(), beta.data<float>(), eps,
                                 rows, d, y.data<float>(), mean.data<float>(), rstd.data<float>()));
  else
    cpu::layer_norm_forward(x.data<float>(), gamma.data<float>(), beta.data<float>(), eps, rows, d,
                            y.data<float>(), mean.data<float>(), rstd.data<float>());
  return y;
}

void layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                         const Tensor& rstd, Tensor& dx, Tensor& dgamma, Tensor& dbeta) {
  check_params("layer_norm_backward", x, gamma);
  int64_t rows = rows_of(x);
  QKV_REQUIRE(dy.shape() == x.shape() && (!dx.defined() || dx.shape() == x.shape()),
              "layer_norm_backward",
              "dy " + shape_str(dy.shape()) + " and dx " + shape_str(dx.shape()) +
                  " must match x " + shape_str(x.shape()));
  QKV_REQUIRE(mean.shape() == Shape{rows} && rstd.shape() == Shape{rows}, "layer_norm_backward",
              "mean and rstd must be [" + std::to_string(rows) + "], got " +
                  shape_str(mean.shape()) + " and " + shape_str(rstd.shape()));
  QKV_REQUIRE((!dgamma.defined() || dgamma.shape() == gamma.shape()) &&
                  (!dbeta.defined() || dbeta.shape() == gamma.shape()),
              "layer_norm_backward", "dgamma and dbeta must be " + shape_str(gamma.shape()));
  Device dev =
      common_device("layer_norm_backward", {&dy, &x, &gamma, &mean, &rstd, &dx, &dgamma, &dbeta});
  auto ptr = [](Tensor& t) { return t.defined() ? t.data<float>() : nullptr; };
  if (dev == Device::cuda)
    QKV_CUDA_KERNEL("layer_norm_backward",
                    cuda::layer_norm_backward(
                        dy.data<float>(), x.data<float>(), gamma.data<float>(), mean.data<float>(),
                        rstd.data<float>(), rows, x.size(-1), ptr(dx), ptr(dgamma), ptr(dbeta)));
  else
    cpu::layer_norm_backward(dy.data<float>(), x.data<float>(), gamma.data<float>(),
                             mean.data<float>(), rstd.data<float>(), rows, x.size(-1), ptr(dx),
                             ptr(dgamma), ptr(dbeta));
}

}  // namespace qkv::ops
