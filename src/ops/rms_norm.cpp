// RMSNorm over the last axis: shape checks, then the kernel of the tensors' device and dtype.
#include "ops/checks.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"

namespace qkv::ops {

Tensor rms_norm_forward(const Tensor& x, const Tensor& gamma, float eps, Tensor& rstd) {
  check_norm_params("rms_norm", x, gamma);
  QKV_REQUIRE(eps >= 0.f, "rms_norm", "eps must be >= 0, got " + std::to_string(eps));
  Device dev = common_device("rms_norm", {&x, &gamma});
  int64_t rows = rows_of(x), d = x.size(-1);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), dev);  // [..., d]
  rstd = Tensor::empty({rows}, DType::f32, dev);
  dispatch<kernels::rms_norm_forward>(dev, x.dtype(), [&]<typename T>(auto* kernel) {
    kernel(x.data<T>(), gamma.data<T>(), eps, rows, d, y.data<T>(), rstd.data<float>());
  });
  return y;
}

void rms_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& rstd,
                       Tensor& dx, Tensor& dgamma) {
  const char* op = "rms_norm_backward";
  check_norm_params(op, x, gamma);
  int64_t rows = rows_of(x);
  QKV_REQUIRE(dy.shape() == x.shape() && (!dx.defined() || dx.shape() == x.shape()), op,
              "dy " + shape_str(dy.shape()) + " and dx " + shape_str(dx.shape()) +
                  " must match x " + shape_str(x.shape()));
  QKV_REQUIRE(rstd.shape() == Shape{rows} && rstd.dtype() == DType::f32, op,
              "rstd must be F32 [" + std::to_string(rows) + "], got " + dtype_name(rstd.dtype()) +
                  " " + shape_str(rstd.shape()));
  QKV_REQUIRE(!dgamma.defined() || dgamma.shape() == gamma.shape(), op,
              "dgamma must be " + shape_str(gamma.shape()) + ", got " + shape_str(dgamma.shape()));
  common_dtype(op, {&dy, &x, &gamma, &dx, &dgamma});
  Device dev = common_device(op, {&dy, &x, &gamma, &rstd, &dx, &dgamma});
  dispatch<kernels::rms_norm_backward>(dev, x.dtype(), [&]<typename T>(auto* kernel) {
    kernel(dy.data<T>(), x.data<T>(), gamma.data<T>(), rstd.data<float>(), rows, x.size(-1),
           data_or_null<T>(dx), data_or_null<T>(dgamma));
  });
}

}  // namespace qkv::ops
