// Activations and dropout: checks, then the kernel of the tensors' device and dtype.
#include "ops/checks.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"

namespace qkv::ops {

namespace {
void check_same(const char* op, const Tensor& dy, const Tensor& x, const Tensor& dx) {
  QKV_REQUIRE(dy.shape() == x.shape() && dx.shape() == x.shape(), op,
              "dy " + shape_str(dy.shape()) + " and dx " + shape_str(dx.shape()) +
                  " must have the input's shape " + shape_str(x.shape()));
  common_dtype(op, {&dy, &dx});
}
}  // namespace

Activation activation_from_name(const std::string& name) {
  if (name == "relu") return Activation::relu;
  if (name == "gelu") return Activation::gelu;
  if (name == "gelu_tanh") return Activation::gelu_tanh;
  if (name == "silu" || name == "swish") return Activation::silu;
  throw std::invalid_argument("unknown activation '" + name +
                              "' (expected one of: relu, gelu, gelu_tanh, silu (or swish))");
}

Tensor activation_forward(Activation act, const Tensor& x) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch<kernels::activation_forward>(x.device(), x.dtype(), [&]<typename T>(auto* kernel) {
    kernel(act, x.data<T>(), y.data<T>(), x.numel());
  });
  return y;
}

void activation_backward(Activation act, const Tensor& dy, const Tensor& x, Tensor& dx) {
  const char* op = "activation_backward";
  if (!dx.defined()) return;
  check_same(op, dy, x, dx);
  common_dtype(op, {&dy, &x});
  Device dev = common_device(op, {&dy, &x, &dx});
  dispatch<kernels::activation_backward>(dev, x.dtype(), [&]<typename T>(auto* kernel) {
    kernel(act, dy.data<T>(), x.data<T>(), dx.data<T>(), x.numel());
  });
}

Tensor dropout_forward(const Tensor& x, float p, Rng& rng, Tensor& mask) {
  QKV_REQUIRE(p >= 0.f && p < 1.f, "dropout", "p must be in [0, 1), got " + std::to_string(p));
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  mask = Tensor::empty(x.shape(), DType::u8, x.device());
  dispatch<kernels::dropout_forward>(x.device(), x.dtype(), [&]<typename T>(auto* kernel) {
    uint64_t base = p > 0.f ? rng.reserve(x.numel()) : 0;
    kernel(x.data<T>(), p, rng.seed(), base, mask.data<uint8_t>(), y.data<T>(), x.numel());
  });
  return y;
}

void dropout_backward(const Tensor& dy, const Tensor& mask, float p, Tensor& dx) {
  const char* op = "dropout_backward";
  if (!dx.defined()) return;
  QKV_REQUIRE(p >= 0.f && p < 1.f, op, "p must be in [0, 1), got " + std::to_string(p));
  QKV_REQUIRE(mask.dtype() == DType::u8, op, "mask must be U8");
  check_same(op, dy, mask, dx);
  Device dev = common_device(op, {&dy, &mask, &dx});
  dispatch<kernels::dropout_backward>(dev, dy.dtype(), [&]<typename T>(auto* kernel) {
    kernel(dy.data<T>(), mask.data<uint8_t>(), p, dx.data<T>(), dy.numel());
  });
}

}  // namespace qkv::ops
