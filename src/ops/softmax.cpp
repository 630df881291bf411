// Softmax and log-softmax over the last axis: checks, then the kernel of the tensor's device
// and dtype.
#include "ops/checks.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"

namespace qkv::ops {

namespace {
void check_input(const char* op, const Tensor& x) {
  QKV_REQUIRE(x.rank() >= 1, op, "needs a tensor with at least one axis, got a scalar");
}

template <typename Kernel>
Tensor rowwise(const char* op, const Tensor& x) {
  check_input(op, x);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch<Kernel>(x.device(), x.dtype(), [&]<typename T>(auto* kernel) {
    kernel(x.data<T>(), rows_of(x), x.size(-1), y.data<T>());
  });
  return y;
}
}  // namespace

Tensor softmax_forward(const Tensor& x) {
  return rowwise<kernels::softmax_forward>("softmax", x);
}

Tensor log_softmax_forward(const Tensor& x) {
  return rowwise<kernels::log_softmax_forward>("log_softmax", x);
}

Tensor logsumexp_forward(const Tensor& x) {
  check_input("logsumexp", x);
  Shape shape(x.shape().begin(), x.shape().end() - 1);
  Tensor y = Tensor::empty(shape, x.dtype(), x.device());
  dispatch<kernels::logsumexp_forward>(x.device(), x.dtype(), [&]<typename T>(auto* kernel) {
    kernel(x.data<T>(), rows_of(x), x.size(-1), y.data<T>());
  });
  return y;
}

void logsumexp_backward(const Tensor& dy, const Tensor& x, const Tensor& y, Tensor& dx) {
  const char* op = "logsumexp_backward";
  if (!dx.defined()) return;
  check_input(op, x);
  QKV_REQUIRE(dx.shape() == x.shape() && dy.numel() == rows_of(x) && y.numel() == rows_of(x), op,
              "dx " + shape_str(dx.shape()) + " must match x " + shape_str(x.shape()) +
                  ", dy and y have one value per row");
  common_dtype(op, {&dy, &x, &y, &dx});
  Device dev = common_device(op, {&dy, &x, &y, &dx});
  dispatch<kernels::logsumexp_backward>(dev, x.dtype(), [&]<typename T>(auto* kernel) {
    kernel(dy.data<T>(), x.data<T>(), y.data<T>(), rows_of(x), x.size(-1), dx.data<T>());
  });
}

void softmax_backward(const Tensor& dy, const Tensor& y, Tensor& dx) {
  const char* op = "softmax_backward";
  if (!dx.defined()) return;
  check_input(op, y);
  QKV_REQUIRE(dy.shape() == y.shape() && dx.shape() == y.shape(), op,
              "dy " + shape_str(dy.shape()) + " and dx " + shape_str(dx.shape()) +
                  " must match y " + shape_str(y.shape()));
  common_dtype(op, {&dy, &y, &dx});
  Device dev = common_device(op, {&dy, &y, &dx});
  dispatch<kernels::softmax_backward>(dev, y.dtype(), [&]<typename T>(auto* kernel) {
    kernel(dy.data<T>(), y.data<T>(), rows_of(y), y.size(-1), dx.data<T>());
  });
}

}  // namespace qkv::ops
