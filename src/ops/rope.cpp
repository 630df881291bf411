// Rotary position embeddings: shape checks, then the kernel of the tensors' device and dtype.
#include <cmath>

#include "ops/checks.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"

namespace qkv::ops {

namespace {
// x (or dy, named `what`) [B, H, L, D] with D even, positions i32 [B, L] on its device, and
// frequencies that are positive and finite.
void check_rope(const char* op, const char* what, const Tensor& x, const Tensor& positions,
                const RopeFrequencies& freq) {
  const std::string name = what;
  QKV_REQUIRE(x.rank() == 4, op,
              name + " must be [batch, heads, len, head_dim], got " + shape_str(x.shape()));
  QKV_REQUIRE(x.size(3) > 0 && x.size(3) % 2 == 0, op,
              "head_dim must be even and positive (it rotates pairs i, i + head_dim / 2), got " +
                  std::to_string(x.size(3)) + " in " + name + " " + shape_str(x.shape()));
  QKV_REQUIRE(positions.dtype() == DType::i32, op,
              "positions must be I32, got " + dtype_name(positions.dtype()));
  QKV_REQUIRE(positions.shape() == (Shape{x.size(0), x.size(2)}), op,
              "positions must be [batch, len] = [" + std::to_string(x.size(0)) + ", " +
                  std::to_string(x.size(2)) + "] for " + name + " " + shape_str(x.shape()) +
                  ", got " + shape_str(positions.shape()));
  QKV_REQUIRE(positions.device() == x.device(), op,
              "positions must be on " + name + "'s device (" + device_name(x.device()) + "), got " +
                  device_name(positions.device()));
  auto positive = [&](const char* name, double value) {
    QKV_REQUIRE(std::isfinite(value) && value > 0, op,
                std::string(name) + " must be positive and finite, got " + std::to_string(value));
  };
  positive("theta", freq.theta);
  if (freq.scaling == RopeScaling::none) return;
  positive("factor", freq.factor);
  if (freq.scaling == RopeScaling::linear) return;
  positive("low_freq_factor", freq.low_freq_factor);
  positive("original_positions", freq.original_positions);
  QKV_REQUIRE(
      std::isfinite(freq.high_freq_factor) && freq.high_freq_factor > freq.low_freq_factor, op,
      "high_freq_factor must be finite and above low_freq_factor " +
          std::to_string(freq.low_freq_factor) + ", got " + std::to_string(freq.high_freq_factor));
}
}  // namespace

Tensor rope_forward(const Tensor& x, const Tensor& positions, const RopeFrequencies& freq) {
  check_rope("rope", "x", x, positions, freq);
  Device dev = x.device();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), dev);  // [B, H, L, D]
  dispatch<kernels::rope_forward>(dev, x.dtype(), [&]<typename T>(auto* kernel) {
    kernel(x.data<T>(), positions.data<int32_t>(), x.size(0), x.size(1), x.size(2), x.size(3), freq,
           y.data<T>());
  });
  return y;
}

void rope_backward(const Tensor& dy, const Tensor& positions, const RopeFrequencies& freq,
                   Tensor& dx) {
  const char* op = "rope_backward";
  check_rope(op, "dy", dy, positions, freq);
  if (!dx.defined()) return;
  QKV_REQUIRE(dx.shape() == dy.shape(), op,
              "dx " + shape_str(dx.shape()) + " must match dy " + shape_str(dy.shape()));
  common_dtype(op, {&dy, &dx});
  Device dev = common_device(op, {&dy, &positions, &dx});
  dispatch<kernels::rope_backward>(dev, dy.dtype(), [&]<typename T>(auto* kernel) {
    kernel(dy.data<T>(), positions.data<int32_t>(), dy.size(0), dy.size(1), dy.size(2), dy.size(3),
           freq, dx.data<T>());
  });
}

}  // namespace qkv::ops
