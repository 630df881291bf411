// LayerNorm over the last axis: shape checks, then the kernel of the tensors' device and dtype.
#include "ops/checks.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"

namespace qkv::ops {

Tensor layer_norm_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps,
                          Tensor& mean, Tensor& rstd) {
  check_norm_params("layer_norm", x, gamma);
  QKV_REQUIRE(beta.shape() == gamma.shape() && beta.dtype() == x.dtype(), "layer_norm",
              "beta is " + shape_str(beta.shape()) + ", expected " + dtype_name(x.dtype()) + " " +
                  shape_str(gamma.shape()));
  QKV_REQUIRE(eps >= 0.f, "layer_norm", "eps must be >= 0, got " + std::to_string(eps));
  Device dev = common_device("layer_norm", {&x, &gamma, &beta});
  int64_t rows = rows_of(x), d = x.size(-1);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), dev);  // [..., d]
  mean = Tensor::empty({rows}, DType::f32, dev);
  rstd = Tensor::empty({rows}, DType::f32, dev);
  dispatch<kernels::layer_norm_forward>(dev, x.dtype(), [&]<typename T>(auto* kernel) {
    kernel(x.data<T>(), gamma.data<T>(), beta.data<T>(), eps, rows, d, y.data<T>(),
           mean.data<float>(), rstd.data<float>());
  });
  return y;
}

void layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                         const Tensor& rstd, Tensor& dx, Tensor& dgamma, Tensor& dbeta) {
  const char* op = "layer_norm_backward";
  check_norm_params(op, x, gamma);
  int64_t rows = rows_of(x);
  QKV_REQUIRE(dy.shape() == x.shape() && (!dx.defined() || dx.shape() == x.shape()), op,
              "dy " + shape_str(dy.shape()) + " and dx " + shape_str(dx.shape()) +
                  " must match x " + shape_str(x.shape()));
  QKV_REQUIRE(mean.shape() == Shape{rows} && rstd.shape() == Shape{rows} &&
                  mean.dtype() == DType::f32 && rstd.dtype() == DType::f32,
              op,
              "mean and rstd must be F32 [" + std::to_string(rows) + "], got " +
                  shape_str(mean.shape()) + " and " + shape_str(rstd.shape()));
  QKV_REQUIRE((!dgamma.defined() || dgamma.shape() == gamma.shape()) &&
                  (!dbeta.defined() || dbeta.shape() == gamma.shape()),
              op, "dgamma and dbeta must be " + shape_str(gamma.shape()));
  common_dtype(op, {&dy, &x, &gamma, &dx, &dgamma, &dbeta});
  Device dev = common_device(op, {&dy, &x, &gamma, &mean, &rstd, &dx, &dgamma, &dbeta});
  dispatch<kernels::layer_norm_backward>(dev, x.dtype(), [&]<typename T>(auto* kernel) {
    kernel(dy.data<T>(), x.data<T>(), gamma.data<T>(), mean.data<float>(), rstd.data<float>(), rows,
           x.size(-1), data_or_null<T>(dx), data_or_null<T>(dgamma), data_or_null<T>(dbeta));
  });
}

}  // namespace qkv::ops
