// FlashAttention on cuda (bf16 and f16, head dims 64 and 128) through ops::attention_forward and
// attention_backward, against a float64 reference computed on the CPU from the same rounded
// inputs. Norm-wise relative error ||x - ref|| / ||ref||: out and dq, dk, dv within 1e-2 (bf16)
// and 5e-3 (f16), lse within 1e-4 (it sees no rounding of P); NaN never passes. The outputs
// start as NaN (poisoned allocator blocks), so an element the kernel does not write fails;
// gradients accumulate into random non-zero values; rows that see no key give exact zeros and
// keys that no query sees get exactly nothing. Repeated runs must agree bit for bit (dq: its
// atomic adds may round in another order). In a build without CUDA these tests skip (in one
// with CUDA a missing device fails them); the argument checks run everywhere.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "ops/ops.h"
#include "support/attention_reference.h"
#include "support/cuda_compare.h"
#include "tensor/allocator.h"
#include "tensor/rng.h"

namespace qkv {
namespace {

using test::AttentionCase;
using test::AttentionReference;

constexpr int64_t kBatch = 2, kHeads = 3;

std::string describe(const AttentionCase& c, DType dtype, int64_t head_dim) {
  std::string s = dtype_name(dtype) + " D" + std::to_string(head_dim) + " Lq" +
                  std::to_string(c.q_len) + " Lk" + std::to_string(c.k_len);
  if (c.causal) s += " causal";
  if (!c.key_lengths.empty())
    s += " key_lengths {" + std::to_string(c.key_lengths[0]) + ", " +
         std::to_string(c.key_lengths[1]) + "}";
  return s;
}

// A random tensor rounded to dtype: the device copy and the rounded values as floats.
struct Rounded {
  Tensor device;
  std::vector<float> host;
};
Rounded random_rounded(const Shape& shape, DType dtype, Rng& rng) {
  Tensor x = Tensor::empty(shape);
  rng.normal(x);
  Tensor r = x.cast(dtype);
  return {r.to(Device::cuda), r.to_vector()};
}

void expect_close(const std::vector<float>& got, const std::vector<float>& base,
                  const std::vector<double>& want, double tol, const char* what) {
  double err = test::norm_relative_error(got, base, want);
  EXPECT_TRUE(err <= tol) << what << ": relative error " << err << " > " << tol;
}

// Fills the cuda allocator's free lists with blocks of NaN bytes (0xff) of the given sizes, so
// the next tensors of those sizes start as NaN. Returns the blocks' addresses.
std::vector<void*> poison_cached_blocks(const std::vector<size_t>& sizes) {
  allocator_for(Device::cuda).release_cached();
  std::vector<Tensor> blocks;
  std::vector<void*> addresses;
  for (size_t bytes : sizes) {
    Tensor host = Tensor::empty({int64_t(bytes)}, DType::u8);
    std::memset(host.raw(), 0xff, bytes);
    blocks.push_back(host.to(Device::cuda));
    addresses.push_back(blocks.back().raw());
  }
  return addresses;  // the blocks return to the free lists here
}

Tensor random_f32(const Shape& shape, Rng& rng) {
  Tensor x = Tensor::empty(shape);
  rng.normal(x);
  return x;
}

void expect_matches_reference(const AttentionCase& c, DType dtype, int64_t d, Rng& rng) {
  SCOPED_TRACE(describe(c, dtype, d));
  const double tol = dtype == DType::bf16 ? 1e-2 : 5e-3;
  const Shape q_shape{kBatch, kHeads, c.q_len, d}, k_shape{kBatch, kHeads, c.k_len, d};
  Rounded q = random_rounded(q_shape, dtype, rng), k = random_rounded(k_shape, dtype, rng);
  Rounded v = random_rounded(k_shape, dtype, rng), dout = random_rounded(q_shape, dtype, rng);
  ops::AttentionMask mask{c.causal, Tensor()};
  if (!c.key_lengths.empty())
    mask.key_lengths = Tensor::from_vector(c.key_lengths, {kBatch}).to(Device::cuda);
  const float scale = 1.f / std::sqrt(float(d));
  const AttentionReference ref =
      test::attention_reference(c, d, scale, q.host, k.host, v.host, dout.host);

  const size_t out_bytes = size_t(kBatch * kHeads * c.q_len * d) * 2;
  const size_t lse_bytes = size_t(kBatch * kHeads * c.q_len) * 4;
  std::vector<void*> poisoned = poison_cached_blocks({out_bytes, lse_bytes});
  ops::AttentionSaved saved;
  Tensor out = ops::attention_forward(q.device, k.device, v.device, mask, scale, &saved);
  ASSERT_EQ(out.dtype(), dtype);
  ASSERT_TRUE(saved.lse.defined()) << "the flash path keeps the row log-sum-exp";
  EXPECT_EQ(out.raw(), poisoned[0]) << "out did not reuse the NaN block";
  EXPECT_EQ(saved.lse.raw(), poisoned[1]) << "lse did not reuse the NaN block";
  const std::vector<float> out_host = out.to_vector(), lse_host = saved.lse.to_vector();
  expect_close(out_host, {}, ref.out, tol, "out");

  // lse over the rows that see a key; the others: -inf and an output row of exact zeros.
  std::vector<float> lse_seen;
  std::vector<double> lse_ref_seen;
  int64_t empty_rows_wrong = 0;
  for (int64_t row = 0; row < kBatch * kHeads * c.q_len; ++row) {
    if (std::isfinite(ref.lse[row])) {
      lse_seen.push_back(lse_host[row]);
      lse_ref_seen.push_back(ref.lse[row]);
      continue;
    }
    bool zeros = lse_host[row] == -INFINITY;
    for (int64_t x = 0; x < d; ++x) zeros = zeros && out_host[row * d + x] == 0.f;
    empty_rows_wrong += !zeros;
  }
  if (!lse_seen.empty()) expect_close(lse_seen, {}, lse_ref_seen, 1e-4, "lse");
  EXPECT_EQ(empty_rows_wrong, 0) << "rows that see no key must give lse -inf and zeros";

  // Gradients accumulate into random values.
  Tensor dq0 = random_f32(q_shape, rng), dk0 = random_f32(k_shape, rng);
  Tensor dv0 = random_f32(k_shape, rng);
  Tensor dq = dq0.to(Device::cuda), dk = dk0.to(Device::cuda), dv = dv0.to(Device::cuda);
  ops::attention_backward(dout.device, q.device, k.device, v.device, out, mask, scale, saved, dq,
                          dk, dv);
  const std::vector<float> dq_host = dq.to_vector(), dk_host = dk.to_vector();
  const std::vector<float> dv_host = dv.to_vector();
  const std::vector<float> dq_init = dq0.to_vector(), dk_init = dk0.to_vector();
  const std::vector<float> dv_init = dv0.to_vector();
  expect_close(dq_host, dq_init, ref.dq, tol, "dq");
  expect_close(dk_host, dk_init, ref.dk, tol, "dk");
  expect_close(dv_host, dv_init, ref.dv, tol, "dv");

  // Rows that see no key, and keys that no query sees, get exactly nothing.
  int64_t touched = 0;
  for (int64_t row = 0; row < kBatch * kHeads * c.q_len; ++row)
    if (!std::isfinite(ref.lse[row]))
      for (int64_t x = 0; x < d; ++x) touched += dq_host[row * d + x] != dq_init[row * d + x];
  for (int64_t bh = 0; bh < kBatch * kHeads; ++bh) {
    const int64_t length = c.key_lengths.empty() ? c.k_len : c.key_lengths[bh / kHeads];
    for (int64_t e = (bh * c.k_len + length) * d; e < (bh + 1) * c.k_len * d; ++e)
      touched += (dk_host[e] != dk_init[e]) + (dv_host[e] != dv_init[e]);
  }
  EXPECT_EQ(touched, 0) << "gradient elements changed where no key is seen";
}

const std::vector<AttentionCase>& cases() {
  static const std::vector<AttentionCase> all = {
      {kBatch, kHeads, 1, 1, false, {}},
      {kBatch, kHeads, 17, 17, true, {}},
      {kBatch, kHeads, 64, 128, true, {}},  // fewer queries than keys: aligned at the end
      {kBatch, kHeads, 128, 64, true, {}},  // more queries than keys: the first 64 rows see nothing
      {kBatch, kHeads, 333, 1000, false, {291, 0}},  // a short and an empty batch entry
      {kBatch, kHeads, 17, 333, true, {200, 0}},
      {kBatch, kHeads, 1000, 333, false, {}},
      {kBatch, kHeads, 1000, 1000, true, {}},
      {kBatch, kHeads, 192, 333, true, {333, 250}},  // whole query tiles, last keys mid-warp
  };
  return all;
}

void run_cases(DType dtype, int64_t d, uint64_t seed) {
  Rng rng(seed);
  for (const AttentionCase& c : cases()) expect_matches_reference(c, dtype, d, rng);
}

TEST(CudaFlashAttention, Bf16HeadDim64) {
  QKV_SKIP_WITHOUT_CUDA();
  run_cases(DType::bf16, 64, 71);
}
TEST(CudaFlashAttention, Bf16HeadDim128) {
  QKV_SKIP_WITHOUT_CUDA();
  run_cases(DType::bf16, 128, 72);
}
TEST(CudaFlashAttention, F16HeadDim64) {
  QKV_SKIP_WITHOUT_CUDA();
  run_cases(DType::f16, 64, 73);
}
TEST(CudaFlashAttention, F16HeadDim128) {
  QKV_SKIP_WITHOUT_CUDA();
  run_cases(DType::f16, 128, 74);
}

// Gradients in the input dtype: summed in f32, then added to dq, dk, dv once; and gradients
// not needed.
TEST(CudaFlashAttention, GradientsInTheInputDtypeAccumulate) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(75);
  const AttentionCase c{kBatch, kHeads, 100, 300, true, {300, 120}};
  const int64_t d = 64;
  const Shape q_shape{kBatch, kHeads, c.q_len, d}, k_shape{kBatch, kHeads, c.k_len, d};
  Rounded q = random_rounded(q_shape, DType::bf16, rng),
          k = random_rounded(k_shape, DType::bf16, rng);
  Rounded v = random_rounded(k_shape, DType::bf16, rng);
  Rounded dout = random_rounded(q_shape, DType::bf16, rng);
  ops::AttentionMask mask{true, Tensor::from_vector(c.key_lengths, {kBatch})};  // on the cpu
  const float scale = 0.125f;
  const AttentionReference ref =
      test::attention_reference(c, d, scale, q.host, k.host, v.host, dout.host);
  Tensor lse;
  Tensor out = ops::flash_attention_forward(q.device, k.device, v.device, mask, scale, lse);
  Rounded dq = random_rounded(q_shape, DType::bf16, rng),
          dk = random_rounded(k_shape, DType::bf16, rng);
  Rounded dv = random_rounded(k_shape, DType::bf16, rng);
  ops::flash_attention_backward(dout.device, q.device, k.device, v.device, out, lse, mask, scale,
                                dq.device, dk.device, dv.device);
  auto total = [](const std::vector<float>& init, const std::vector<double>& grad) {
    std::vector<double> sum(grad.size());
    for (size_t i = 0; i < grad.size(); ++i) sum[i] = init[i] + grad[i];
    return sum;
  };
  expect_close(dq.device.to_vector(), {}, total(dq.host, ref.dq), 1e-2, "dq (bf16)");
  expect_close(dk.device.to_vector(), {}, total(dk.host, ref.dk), 1e-2, "dk (bf16)");
  expect_close(dv.device.to_vector(), {}, total(dv.host, ref.dv), 1e-2, "dv (bf16)");

  // Only dv needed: dq and dk undefined.
  Tensor dv_only = Tensor::zeros(k_shape, DType::f32, Device::cuda), undefined_dq, undefined_dk;
  ops::flash_attention_backward(dout.device, q.device, k.device, v.device, out, lse, mask, scale,
                                undefined_dq, undefined_dk, dv_only);
  expect_close(dv_only.to_vector(), {}, ref.dv, 1e-2, "dv alone");
}

// A result that moves between runs on the same inputs is a race.
TEST(CudaFlashAttention, RepeatedRunsAgree) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(76);
  for (int64_t d : {64, 128}) {
    SCOPED_TRACE(testing::Message() << "D" << d);
    const Shape shape{kBatch, kHeads, 1000, d};
    Rounded q = random_rounded(shape, DType::bf16, rng),
            k = random_rounded(shape, DType::bf16, rng);
    Rounded v = random_rounded(shape, DType::bf16, rng),
            dout = random_rounded(shape, DType::bf16, rng);
    ops::AttentionMask mask{true, Tensor::from_vector(std::vector<int32_t>{1000, 517}, {kBatch})};
    std::vector<std::vector<float>> runs[5];  // out, lse, dq, dk, dv per run
    for (int run = 0; run < 3; ++run) {
      Tensor lse;
      Tensor out = ops::flash_attention_forward(q.device, k.device, v.device, mask, 0.1f, lse);
      Tensor dq = Tensor::zeros(shape, DType::f32, Device::cuda);
      Tensor dk = Tensor::zeros(shape, DType::f32, Device::cuda);
      Tensor dv = Tensor::zeros(shape, DType::f32, Device::cuda);
      ops::flash_attention_backward(dout.device, q.device, k.device, v.device, out, lse, mask, 0.1f,
                                    dq, dk, dv);
      const Tensor* results[5] = {&out, &lse, &dq, &dk, &dv};
      for (int i = 0; i < 5; ++i) runs[i].push_back(results[i]->to_vector());
    }
    const char* names[5] = {"out", "lse", "dq", "dk", "dv"};
    for (int i = 0; i < 5; ++i) {
      for (int run = 1; run < 3; ++run) {
        if (i == 2) {  // dq: atomic adds, in any order
          std::vector<double> first(runs[i][0].begin(), runs[i][0].end());
          expect_close(runs[i][run], {}, first, 1e-6, "dq between runs");
        } else {
          EXPECT_TRUE(runs[i][run] == runs[i][0]) << names[i] << " differs between runs";
        }
      }
    }
  }
}

// The argument checks name what is supported; they come before the device check, so they run
// on cpu tensors too.
void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing \"" << needle << "\"";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "error \"" << e.what() << "\" does not contain \"" << needle << "\"";
  }
}

TEST(CudaFlashAttention, BadArgumentsGiveNamedErrors) {
  auto t = [](DType dtype, int64_t len, int64_t d) {
    return Tensor::zeros({2, 3, len, d}, DType::f32).cast(dtype);
  };
  const ops::AttentionMask mask;
  Tensor lse;
  auto forward = [&](const Tensor& q, const Tensor& k, const Tensor& v) {
    return [&, q, k, v] { ops::flash_attention_forward(q, k, v, mask, 0.125f, lse); };
  };
  const Tensor b64 = t(DType::bf16, 8, 64);
  expect_error(forward(t(DType::f32, 8, 64), t(DType::f32, 8, 64), t(DType::f32, 8, 64)),
               "all BF16 or all F16");
  expect_error(forward(b64, t(DType::f16, 8, 64), b64), "all BF16 or all F16");
  expect_error(forward(t(DType::bf16, 8, 32), t(DType::bf16, 8, 32), t(DType::bf16, 8, 32)),
               "head dims 64 and 128");
  expect_error(forward(b64, t(DType::bf16, 8, 128), t(DType::bf16, 8, 128)), "do not fit");
  expect_error(forward(b64.reshape({6, 8, 64}), b64, b64), "needs q [B, H, Lq, D]");
  expect_error(forward(b64, b64, b64), "runs on cuda");
}

}  // namespace
}  // namespace qkv
