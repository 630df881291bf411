// Activations and dropout: checks, then the device's kernel.
#include "ops/cpu/kernels.h"
#include "ops/cuda/kernels.h"
#include "ops/dispatch.h"

namespace qkv::ops {

namespace {
void check_same(const char* op, const Tensor& dy, const Tensor& x, const Tensor& dx) {
  QKV_REQUIRE(dy.shape() == x.shape() && dx.shape() == x.shape() && dy.dtype() == DType::f32 &&
                  dx.dtype() == DType::f32,
              op,
              "dy " + shape_str(dy.shape()) + " and dx " + shape_str(dx.shape()) +
                  " must be F32 of the input's shape " + shape_str(x.shape()));
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
  QKV_REQUIRE(x.dtype() == DType::f32, "activation", "needs an F32 tensor");
  Tensor y = Tensor::empty(x.shape(), DType::f32, x.device());
  if (x.device() == Device::cuda)
    QKV_CUDA_KERNEL("activation",
                    cuda::activation_forward(act, x.data<float>(), y.data<float>(), x.numel()));
  else
    cpu::activation_forward(act, x.data<float>(), y.data<float>(), x.numel());
  return y;
}

void activation_backward(Activation act, const Tensor& dy, const Tensor& x, Tensor& dx) {
  if (!dx.defined()) return;
  check_same("activation_backward", dy, x, dx);
  Device dev = common_device("activation_backward", {&dy, &x, &dx});
  if (dev == Device::cuda)
    QKV_CUDA_KERNEL("activation_backward",
                    cuda::activation_backward(act, dy.data<float>(), x.data<float>(),
                                              dx.data<float>(), x.numel()));
  else
    cpu::activation_backward(act, dy.data<float>(), x.data<float>(), dx.data<float>(), x.numel());
}

Tensor dropout_forward(const Tensor& x, float p, Rng& rng, Tensor& mask) {
  QKV_REQUIRE(p >= 0.f && p < 1.f, "dropout", "p must be in [0, 1), got " + std::to_string(p));
  QKV_REQUIRE(x.dtype() == DType::f32, "dropout", "needs an F32 tensor");
  Tensor y = Tensor::empty(x.shape(), DType::f32, x.device());
  mask = Tensor::empty(x.shape(), DType::u8, x.device());
  uint64_t base = p > 0.f ? rng.reserve(x.numel()) : 0;
  if (x.device() == Device::cuda)
    QKV_CUDA_KERNEL(
        "dropout", cuda::dropout_forward(x.data<float>(), p, rng.seed(), base, mask.data<uint8_t>(),
                                         y.data<float>(), x.numel()));
  else
    cpu::dropout_forward(x.data<float>(), p, rng, base, mask.data<uint8_t>(), y.data<float>(),
                         x.numel());
  return y;
}

void dropout_backward(const Tensor& dy, const Tensor& mask, float p, Tensor& dx) {
  if (!dx.defined()) return;
  QKV_REQUIRE(p >= 0.f && p < 1.f, "dropout_backward",
              "p must be in [0, 1), got " + std::to_string(p));
  QKV_REQUIRE(mask.dtype() == DType::u8, "dropout_backward", "mask must be U8");
  check_same("dropout_backward", dy, mask, dx);
  Device dev = common_device("dropout_backward", {&dy, &mask, &dx});
  if (dev == Device::cuda)
    QKV_CUDA_KERNEL("dropout_backward",
                    cuda::dropout_backward(dy.data<float>(), mask.data<uint8_t>(), p,
                                           dx.data<float>(), dy.numel()));
  else
    cpu::dropout_backward(dy.data<float>(), mask.data<uint8_t>(), p, dx.data<float>(), dy.numel());
}

}  // namespace qkv::ops
