// Softmax and log-softmax over the last axis: checks, then the device's kernel.
#include "ops/cpu/kernels.h"
#include "ops/cuda/kernels.h"
#include "ops/dispatch.h"

namespace qkv::ops {

namespace {
void check_input(const char* op, const Tensor& x) {
  QKV_REQUIRE(x.rank() >= 1 && x.dtype() == DType::f32, op,
              "needs an F32 tensor with at least one axis, got " + dtype_name(x.dtype()) + " " +
                  shape_str(x.shape()));
}
}  // namespace

Tensor softmax_forward(const Tensor& x) {
  check_input("softmax", x);
  Tensor y = Tensor::empty(x.shape(), DType::f32, x.device());
  if (x.device() == Device::cuda)
    QKV_CUDA_KERNEL(
        "softmax", cuda::softmax_forward(x.data<float>(), rows_of(x), x.size(-1), y.data<float>()));
  else
    cpu::softmax_forward(x.data<float>(), rows_of(x), x.size(-1), y.data<float>());
  return y;
}

void softmax_backward(const Tensor& dy, const Tensor& y, Tensor& dx) {
  if (!dx.defined()) return;
  check_input("softmax_backward", y);
  QKV_REQUIRE(dy.shape() == y.shape() && dx.shape() == y.shape() && dy.dtype() == DType::f32,
              "softmax_backward",
              "dy " + shape_str(dy.shape()) + " and dx " + shape_str(dx.shape()) +
                  " must match y " + shape_str(y.shape()));
  Device dev = common_device("softmax_backward", {&dy, &y, &dx});
  if (dev == Device::cuda)
    QKV_CUDA_KERNEL("softmax_backward",
                    cuda::softmax_backward(dy.data<float>(), y.data<float>(), rows_of(y),
                                           y.size(-1), dx.data<float>()));
  else
    cpu::softmax_backward(dy.data<float>(), y.data<float>(), rows_of(y), y.size(-1),
                          dx.data<float>());
}

Tensor log_softmax_forward(const Tensor& x) {
  check_input("log_softmax", x);
  Tensor y = Tensor::empty(x.shape(), DType::f32, x.device());
  if (x.device() == Device::cuda)
    QKV_CUDA_KERNEL("log_softmax", cuda::log_softmax_forward(x.data<float>(), rows_of(x),
                                                             x.size(-1), y.data<float>()));
  else
    cpu::log_softmax_forward(x.data<float>(), rows_of(x), x.size(-1), y.data<float>());
  return y;
}

}  // namespace qkv::ops
