// Scaled dot-product attention: shape and mask checks, the choice between the naive and the
// tiled kernel (ops/cpu/attention_{naive,tiled}.cpp), and what each keeps for the backward pass.
// On cuda, f32 attention is the naive kernel (ops/cuda/attention.cu; cuda has no tiled f32
// kernel), or under bf16 autocast the FlashAttention kernels on bf16 copies; bf16 and f16 go to
// the FlashAttention kernels (ops/flash_attention.cpp).
#include <cmath>

#include "ops/checks.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"
#include "ops/precision.h"

namespace qkv::ops {

namespace {
// automatic: tiled from 256 keys on. Below that the [Lq, Lk] probabilities are small and one
// GEMM per (batch, head) beats many tile GEMMs; from there the tiled kernel is as fast or faster
// and its memory grows linearly with the lengths instead of with their product.
constexpr int64_t kTiledFromKeys = 256;

AttentionImpl resolve(AttentionImpl impl, int64_t k_len, Device dev, DType dtype) {
  if (impl != AttentionImpl::automatic) return impl;
  return k_len >= kTiledFromKeys && has_kernel<kernels::attention_tiled_forward>(dev, dtype)
             ? AttentionImpl::tiled
             : AttentionImpl::naive;
}

AttentionDims attention_dims(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                             const AttentionMask& mask, float scale) {
  QKV_REQUIRE(q.rank() == 4 && k.rank() == 4, op,
              "needs q [B, H, Lq, D] and k, v [B, H, Lk, D], got q " + shape_str(q.shape()));
  common_dtype(op, {&q, &k, &v});
  QKV_REQUIRE(k.size(0) == q.size(0) && k.size(1) == q.size(1) && k.size(3) == q.size(3) &&
                  v.shape() == k.shape() && q.size(3) > 0,
              op,
              "q " + shape_str(q.shape()) + ", k " + shape_str(k.shape()) + " and v " +
                  shape_str(v.shape()) + " do not fit q [B, H, Lq, D], k and v [B, H, Lk, D]");
  AttentionDims d{q.size(0), q.size(1),   q.size(2), k.size(2),
                  q.size(3), mask.causal, nullptr,   scale};
  const Tensor& lengths = mask.key_lengths;
  if (lengths.defined()) {
    QKV_REQUIRE(lengths.dtype() == DType::i32 && lengths.shape() == Shape{d.batch}, op,
                "key_lengths must be I32 [" + std::to_string(d.batch) + "], got " +
                    shape_str(lengths.shape()));
    common_device(op, {&q, &lengths});
    Tensor host = on_host(lengths);
    const int32_t* h = host.data<int32_t>();
    for (int64_t b = 0; b < d.batch; ++b)
      QKV_REQUIRE(h[b] >= 0 && h[b] <= d.k_len, op,
                  "key_lengths[" + std::to_string(b) + "] = " + std::to_string(h[b]) +
                      " outside [0, " + std::to_string(d.k_len) + "]");
    d.key_lengths = lengths.data<int32_t>();  // on the device of q
  }
  return d;
}
// f32 cuda attention that a bf16 AutocastScope sends to FlashAttention: shapes it supports
// (others stay on the naive kernel, whose products the scope makes bf16).
bool autocast_to_flash(const Tensor& q, const Tensor& k, const Tensor& v) {
  if (matmul_precision() != MatmulPrecision::bf16 || !q.defined() || !k.defined() || !v.defined())
    return false;
  for (const Tensor* t : {&q, &k, &v})
    if (t->device() != Device::cuda || t->dtype() != DType::f32 || t->rank() != 4) return false;
  return (q.size(3) == 64 || q.size(3) == 128) && q.size(0) * q.size(1) <= 65535 &&
         q.size(2) >= 1 && k.size(2) >= 1;
}

Tensor autocast_flash_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                              const AttentionMask& mask, float scale, AttentionSaved* saved) {
  Tensor q16 = q.cast(DType::bf16), k16 = k.cast(DType::bf16), v16 = v.cast(DType::bf16), lse;
  Tensor out16 = flash_attention_forward(q16, k16, v16, mask, scale, lse);  // [B, H, Lq, D]
  if (saved) *saved = AttentionSaved{AttentionImpl::tiled, Tensor(), lse, q16, k16, v16, out16};
  return out16.cast(DType::f32);
}
}  // namespace

Tensor attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                         const AttentionMask& mask, float scale, AttentionSaved* saved,
                         AttentionImpl impl) {
  if (uses_flash_attention(q)) {  // bf16/f16 on cuda
    Tensor lse;
    Tensor out = flash_attention_forward(q, k, v, mask, scale, lse);
    if (saved) {
      *saved = AttentionSaved{};
      saved->impl = AttentionImpl::tiled;
      saved->lse = lse;
    }
    return out;
  }
  if (autocast_to_flash(q, k, v)) return autocast_flash_forward(q, k, v, mask, scale, saved);
  AttentionDims d = attention_dims("attention", q, k, v, mask, scale);
  Device dev = common_device("attention", {&q, &k, &v});
  impl = resolve(impl, d.k_len, dev, q.dtype());
  Tensor out = Tensor::empty(q.shape(), q.dtype(), dev);
  if (saved) {
    *saved = AttentionSaved{};
    saved->impl = impl;
    if (impl == AttentionImpl::naive)
      saved->probs = Tensor::empty({d.batch, d.heads, d.q_len, d.k_len}, q.dtype(), dev);
    else
      saved->lse = Tensor::empty({d.batch, d.heads, d.q_len}, DType::f32, dev);
  }
  if (d.k_len == 0) {  // no key at all: every row sees nothing
    out.zero();
    if (saved && saved->probs.defined()) saved->probs.zero();
    if (saved && saved->lse.defined()) saved->lse.fill(-INFINITY);
    return out;
  }
  Tensor no_probs, no_lse;
  Tensor& probs = saved ? saved->probs : no_probs;
  Tensor& lse = saved ? saved->lse : no_lse;
  if (impl == AttentionImpl::naive)
    dispatch<kernels::attention_naive_forward>(dev, q.dtype(), [&]<typename T>(auto* kernel) {
      kernel(d, q.data<T>(), k.data<T>(), v.data<T>(), out.data<T>(), data_or_null<T>(probs));
    });
  else
    dispatch<kernels::attention_tiled_forward>(dev, q.dtype(), [&]<typename T>(auto* kernel) {
      kernel(d, q.data<T>(), k.data<T>(), v.data<T>(), out.data<T>(), data_or_null<float>(lse));
    });
  return out;
}

void attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& out, const AttentionMask& mask, float scale,
                        const AttentionSaved& saved, Tensor& dq, Tensor& dk, Tensor& dv) {
  if (uses_flash_attention(q)) {
    flash_attention_backward(dout, q, k, v, out, saved.lse, mask, scale, dq, dk, dv);
    return;
  }
  if (saved.q16.defined()) {  // autocast to FlashAttention: f32 gradients from the bf16 copies
    QKV_REQUIRE(dout.shape() == q.shape() && dout.dtype() == DType::f32, "attention_backward",
                "dout must be F32 " + shape_str(q.shape()) + ", got " + shape_str(dout.shape()));
    flash_attention_backward(dout.cast(DType::bf16), saved.q16, saved.k16, saved.v16, saved.out16,
                             saved.lse, mask, scale, dq, dk, dv);
    return;
  }
  const char* op = "attention_backward";
  AttentionDims d = attention_dims(op, q, k, v, mask, scale);
  QKV_REQUIRE(dout.shape() == q.shape() && out.shape() == q.shape(), op,
              "dout " + shape_str(dout.shape()) + " and out " + shape_str(out.shape()) +
                  " must have q's shape " + shape_str(q.shape()));
  QKV_REQUIRE(!dq.defined() || dq.shape() == q.shape(), op, "dq must have q's shape");
  QKV_REQUIRE(!dk.defined() || dk.shape() == k.shape(), op, "dk must have k's shape");
  QKV_REQUIRE(!dv.defined() || dv.shape() == v.shape(), op, "dv must have v's shape");
  bool naive = saved.impl == AttentionImpl::naive;
  QKV_REQUIRE(saved.impl != AttentionImpl::automatic, op, "saved state names no implementation");
  QKV_REQUIRE(
      naive ? saved.probs.defined() && saved.probs.numel() == d.batch * d.heads * d.q_len * d.k_len
            : saved.lse.defined() && saved.lse.numel() == d.batch * d.heads * d.q_len,
      op, "saved state does not fit these shapes (was it made by attention_forward?)");
  common_dtype(op, {&dout, &q, &out, &dq, &dk, &dv, naive ? &saved.probs : nullptr});
  Device dev = common_device(op, {&dout, &q, &k, &v, &out, &dq, &dk, &dv});
  if (d.k_len == 0) return;
  if (naive)
    dispatch<kernels::attention_naive_backward>(dev, q.dtype(), [&]<typename T>(auto* kernel) {
      kernel(d, dout.data<T>(), q.data<T>(), k.data<T>(), v.data<T>(), out.data<T>(),
             saved.probs.data<T>(), data_or_null<T>(dq), data_or_null<T>(dk), data_or_null<T>(dv));
    });
  else
    dispatch<kernels::attention_tiled_backward>(dev, q.dtype(), [&]<typename T>(auto* kernel) {
      kernel(d, dout.data<T>(), q.data<T>(), k.data<T>(), v.data<T>(), out.data<T>(),
             saved.lse.data<float>(), data_or_null<T>(dq), data_or_null<T>(dk),
             data_or_null<T>(dv));
    });
}

}  // namespace qkv::ops
