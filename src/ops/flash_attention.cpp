// FlashAttention on CUDA: argument checks, then the kernels of ops/cuda/flash_attention_*.cu.
#include <climits>

#include "ops/checks.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"

namespace qkv::ops {

namespace {

// Shapes, dtypes and head dim first, the device last (so the first three are named even for
// tensors on the cpu). key_lengths on the cpu are checked and copied into lengths_on_device.
FlashShape flash_shape(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                       const AttentionMask& mask, float scale, Tensor& lengths_on_device) {
  QKV_REQUIRE(q.rank() == 4 && k.rank() == 4 && v.rank() == 4, op,
              "needs q [B, H, Lq, D] and k, v [B, H, Lk, D], got q " + shape_str(q.shape()) +
                  ", k " + shape_str(k.shape()) + ", v " + shape_str(v.shape()));
  QKV_REQUIRE(k.size(0) == q.size(0) && k.size(1) == q.size(1) && k.size(3) == q.size(3) &&
                  v.shape() == k.shape(),
              op,
              "q " + shape_str(q.shape()) + ", k " + shape_str(k.shape()) + " and v " +
                  shape_str(v.shape()) + " do not fit q [B, H, Lq, D], k and v [B, H, Lk, D]");
  const int64_t batch = q.size(0), heads = q.size(1), q_len = q.size(2), k_len = k.size(2);
  QKV_REQUIRE(
      batch >= 1 && heads >= 1 && q_len >= 1 && k_len >= 1, op,
      "needs B, H, Lq and Lk >= 1, got q " + shape_str(q.shape()) + ", k " + shape_str(k.shape()));
  QKV_REQUIRE(batch * heads <= 65535 && q_len <= INT_MAX && k_len <= INT_MAX, op,
              "supports at most 65535 batch * heads, got q " + shape_str(q.shape()));
  const DType t = q.dtype();
  QKV_REQUIRE((t == DType::bf16 || t == DType::f16) && k.dtype() == t && v.dtype() == t, op,
              "needs q, k and v all BF16 or all F16, got " + dtype_name(q.dtype()) + ", " +
                  dtype_name(k.dtype()) + ", " + dtype_name(v.dtype()));
  QKV_REQUIRE(q.size(3) == 64 || q.size(3) == 128, op,
              "supports head dims 64 and 128, got " + std::to_string(q.size(3)));
  const Device dev = common_device(op, {&q, &k, &v});
  QKV_REQUIRE(dev == Device::cuda, op, "runs on cuda, got tensors on " + device_name(dev));

  const Tensor& lengths = mask.key_lengths;
  if (lengths.defined()) {
    QKV_REQUIRE(lengths.dtype() == DType::i32 && lengths.shape() == Shape{batch}, op,
                "key_lengths must be I32 [" + std::to_string(batch) + "], got " +
                    shape_str(lengths.shape()));
    if (lengths.device() == Device::cpu) {
      const int32_t* len = lengths.data<int32_t>();
      for (int64_t b = 0; b < batch; ++b)
        QKV_REQUIRE(len[b] >= 0 && len[b] <= k_len, op,
                    "key_lengths[" + std::to_string(b) + "] = " + std::to_string(len[b]) +
                        " outside [0, " + std::to_string(k_len) + "]");
      lengths_on_device = lengths.to(Device::cuda);
    } else {  // on the device: the kernels clamp each length to [0, Lk]
      lengths_on_device = lengths;
    }
  }
  return FlashShape{int(batch),
                    int(heads),
                    int(q_len),
                    int(k_len),
                    int(q.size(3)),
                    mask.causal,
                    lengths_on_device.defined() ? lengths_on_device.data<int32_t>() : nullptr,
                    scale};
}

// A gradient tensor, if given, must be shaped like its input and be f32 or the input dtype.
void check_gradient(const char* op, const char* name, const Tensor& grad, const Tensor& like) {
  if (!grad.defined()) return;
  QKV_REQUIRE(
      grad.shape() == like.shape() && (grad.dtype() == DType::f32 || grad.dtype() == like.dtype()),
      op,
      std::string(name) + " must be F32 or " + dtype_name(like.dtype()) + " " +
          shape_str(like.shape()) + ", got " + dtype_name(grad.dtype()) + " " +
          shape_str(grad.shape()));
}

}  // namespace

bool uses_flash_attention(const Tensor& q) {
  return q.defined() && q.device() == Device::cuda &&
         (q.dtype() == DType::bf16 || q.dtype() == DType::f16);
}

Tensor flash_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                               const AttentionMask& mask, float scale, Tensor& lse) {
  const char* op = "flash_attention_forward";
  Tensor lengths;
  const FlashShape s = flash_shape(op, q, k, v, mask, scale, lengths);
  Tensor out = Tensor::empty(q.shape(), q.dtype(), Device::cuda);  // [B, H, Lq, D]
  lse = Tensor::empty({s.batch, s.heads, s.q_len}, DType::f32, Device::cuda);
  dispatch<kernels::flash_attention_forward>(
      Device::cuda, q.dtype(), [&]<typename T>(auto* kernel) {
        kernel(s, q.data<T>(), k.data<T>(), v.data<T>(), out.data<T>(), lse.data<float>());
      });
  return out;
}

void flash_attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& out, const Tensor& lse, const AttentionMask& mask,
                              float scale, Tensor& dq, Tensor& dk, Tensor& dv) {
  const char* op = "flash_attention_backward";
  Tensor lengths;
  const FlashShape s = flash_shape(op, q, k, v, mask, scale, lengths);
  QKV_REQUIRE(dout.shape() == q.shape() && out.shape() == q.shape() && dout.dtype() == q.dtype() &&
                  out.dtype() == q.dtype(),
              op,
              "dout and out must be " + dtype_name(q.dtype()) + " " + shape_str(q.shape()) +
                  " like q, got " + shape_str(dout.shape()) + " and " + shape_str(out.shape()));
  const Shape lse_shape{s.batch, s.heads, s.q_len};
  QKV_REQUIRE(lse.defined() && lse.dtype() == DType::f32 && lse.shape() == lse_shape, op,
              "lse must be F32 [B, H, Lq] from flash_attention_forward");
  check_gradient(op, "dq", dq, q);
  check_gradient(op, "dk", dk, k);
  check_gradient(op, "dv", dv, v);
  QKV_REQUIRE(common_device(op, {&q, &dout, &out, &lse, &dq, &dk, &dv}) == Device::cuda, op,
              "needs every tensor on cuda");
  // dq is summed with atomic adds in f32: in place, or in zeroed scratch added to dq at the end.
  // dk and dv are added to once, in their own dtype.
  const bool dq_in_place = dq.defined() && dq.dtype() == DType::f32;
  Tensor dq32 = dq_in_place ? dq : Tensor::zeros(q.shape(), DType::f32, Device::cuda);
  Tensor delta = Tensor::empty({s.batch, s.heads, s.q_len}, DType::f32, Device::cuda);
  auto grad = [](Tensor& g) {
    return FlashGrad{g.defined() ? g.raw() : nullptr, g.defined() && g.dtype() == DType::f32};
  };
  dispatch<kernels::flash_attention_backward>(
      Device::cuda, q.dtype(), [&]<typename T>(auto* kernel) {
        kernel(s, dout.data<T>(), q.data<T>(), k.data<T>(), v.data<T>(), out.data<T>(),
               lse.data<float>(), delta.data<float>(), dq32.data<float>(), grad(dk), grad(dv));
      });
  if (dq.defined() && !dq_in_place)
    dispatch<kernels::add_f32_into>(Device::cuda, dq.dtype(), [&]<typename T>(auto* kernel) {
      kernel(dq32.data<float>(), dq.data<T>(), dq.numel());
    });
}

}  // namespace qkv::ops
