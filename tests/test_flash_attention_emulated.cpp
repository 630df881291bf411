// The FlashAttention kernels themselves (src/ops/cuda/flash_attention_*_kernel.cuh) run on the
// CPU, CUDA emulated by tests/cuda_emulation, against float64 on small shapes: their tile
// indexing, fragment layouts, masks, tails and cp.async waits, in every build (AddressSanitizer's
// too: the fiber scheduler tells it of each stack switch), no GPU.
// Tolerances as on the GPU (test_cuda_flash_attention): 1e-2 (bf16), 5e-3 (f16), lse 1e-4. The
// outputs start as NaN and shared memory as 0xff bytes before each block.
#include "cuda_emulation/cuda_emulation.h"
// The kernels (as rewritten by cmake/cuda_emulation.cmake), after the emulation.
#include "ops/cuda/flash_attention_backward_kernel.cuh"
#include "ops/cuda/flash_attention_forward_kernel.cuh"
// Then the rest.
#include <gtest/gtest.h>

#include <random>

#include "support/attention_reference.h"

namespace qkv::ops::cuda {
static_assert(cuda_emulation::kMaxDynamicShared >= size_t(flash_bwd::kBackwardSmemBytes<128>));
static_assert(cuda_emulation::kMaxDynamicShared >= size_t(flash_fwd::kForwardSmemBytes<128>));
}  // namespace qkv::ops::cuda

namespace qkv {
namespace {

using cuda_emulation::from_float;
using cuda_emulation::to_float;
namespace fwd = ops::cuda::flash_fwd;

// Runs kernel() as every thread of `grid` blocks of `threads` threads.
void emulate(dim3 grid, int threads, size_t shared_bytes, std::function<void()> kernel) {
  cuda_emulation::run_grid(grid, dim3(threads), shared_bytes, "flash kernel", std::move(kernel));
}
namespace bwd = ops::cuda::flash_bwd;

// Random values rounded to T: the bits and their values.
struct Rounded {
  std::vector<uint16_t> bits;
  std::vector<float> values;
};
template <class T>
Rounded random_rounded(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  Rounded r{std::vector<uint16_t>(n), std::vector<float>(n)};
  for (size_t i = 0; i < n; ++i) {
    r.bits[i] = from_float<T>(normal(rng));
    r.values[i] = to_float<T>(r.bits[i]);
  }
  return r;
}

template <class T>
std::vector<float> values_of(const std::vector<uint16_t>& bits) {
  std::vector<float> v(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) v[i] = to_float<T>(bits[i]);
  return v;
}

// Forward, then backward with dq, dk in f32 and dv in T (both kinds of gradient), from zeros.
template <class T, int D>
void expect_kernels_match(const test::AttentionCase& c, std::mt19937& rng) {
  SCOPED_TRACE(testing::Message() << (std::is_same_v<T, __nv_bfloat16> ? "bf16" : "f16") << " D"
                                  << D << " B" << c.batch << " Lq" << c.q_len << " Lk" << c.k_len
                                  << (c.causal ? " causal" : "")
                                  << (c.key_lengths.empty() ? "" : " padded"));
  const double tol = std::is_same_v<T, __nv_bfloat16> ? 1e-2 : 5e-3;
  const int heads = int(c.batch * c.heads);
  const size_t q_size = size_t(heads) * c.q_len * D, k_size = size_t(heads) * c.k_len * D;
  Rounded q = random_rounded<T>(q_size, rng), k = random_rounded<T>(k_size, rng);
  Rounded v = random_rounded<T>(k_size, rng), dout = random_rounded<T>(q_size, rng);
  const float scale = 1.f / std::sqrt(float(D));
  const test::AttentionReference ref =
      test::attention_reference(c, D, scale, q.values, k.values, v.values, dout.values);
  std::vector<int32_t> lengths = c.key_lengths;
  const ops::FlashShape s{int(c.batch),
                          int(c.heads),
                          int(c.q_len),
                          int(c.k_len),
                          D,
                          c.causal,
                          lengths.empty() ? nullptr : lengths.data(),
                          scale};
  auto as_t = [](std::vector<uint16_t>& x) { return reinterpret_cast<T*>(x.data()); };

  std::vector<uint16_t> out_bits(q_size, 0xffff);  // NaN
  std::vector<float> lse(size_t(heads) * c.q_len, NAN);
  emulate({unsigned(c.q_len + fwd::kQueryTile - 1) / fwd::kQueryTile, unsigned(heads)},
          fwd::kThreads, fwd::kForwardSmemBytes<D>, [&] {
            fwd::flash_forward_kernel<T, D>(s, as_t(q.bits), as_t(k.bits), as_t(v.bits),
                                            as_t(out_bits), lse.data());
          });
  EXPECT_LE(test::norm_relative_error(values_of<T>(out_bits), {}, ref.out), tol) << "out";
  std::vector<float> lse_seen;
  std::vector<double> lse_ref;
  for (size_t row = 0; row < lse.size(); ++row) {
    if (std::isfinite(ref.lse[row])) {
      lse_seen.push_back(lse[row]);
      lse_ref.push_back(ref.lse[row]);
    } else {
      EXPECT_EQ(lse[row], -INFINITY) << "row " << row << " sees no key";
    }
  }
  if (!lse_seen.empty()) {
    EXPECT_LE(test::norm_relative_error(lse_seen, {}, lse_ref), 1e-4) << "lse";
  }

  const int64_t rows = int64_t(heads) * c.q_len;
  std::vector<float> delta(rows, NAN), dq(q_size, 0.f), dk(k_size, 0.f);
  std::vector<uint16_t> dv_bits(k_size, from_float<T>(0.f));
  emulate({unsigned(rows * 32 + 255) / 256}, 256, 0, [&] {
    bwd::flash_delta_kernel<T, D>(as_t(dout.bits), as_t(out_bits), delta.data(), rows);
  });
  emulate({unsigned(c.k_len + bwd::kKeyTile - 1) / bwd::kKeyTile, unsigned(heads)}, bwd::kThreads,
          bwd::kBackwardSmemBytes<D>, [&] {
            bwd::flash_backward_kernel<T, D>(s, as_t(dout.bits), as_t(q.bits), as_t(k.bits),
                                             as_t(v.bits), lse.data(), delta.data(), dq.data(),
                                             ops::FlashGrad{dk.data(), true},
                                             ops::FlashGrad{dv_bits.data(), false});
          });
  EXPECT_LE(test::norm_relative_error(dq, {}, ref.dq), tol) << "dq";
  EXPECT_LE(test::norm_relative_error(dk, {}, ref.dk), tol) << "dk";
  EXPECT_LE(test::norm_relative_error(values_of<T>(dv_bits), {}, ref.dv), tol) << "dv";
}

// Shapes that cover one key, causal alignment with more or fewer queries than keys, tails of
// every tile size, and padding with a short and an empty batch entry.
const std::vector<test::AttentionCase>& cases() {
  static const std::vector<test::AttentionCase> all = {
      {1, 1, 1, 1, false, {}},
      {2, 1, 17, 17, true, {}},
      {1, 2, 64, 130, true, {}},
      {1, 1, 130, 64, true, {}},
      {2, 1, 70, 200, false, {150, 0}},
      {2, 1, 140, 140, true, {140, 3}},
      {1, 1, 200, 70, false, {}},
      // Whole query tiles whose last visible key falls inside a warp's 16 keys.
      {2, 1, 128, 200, false, {189, 0}},
      {1, 1, 128, 140, true, {}},
  };
  return all;
}

// Every case three times: warps in step, each cp.async landing at once or as late as its
// wait_group allows; and each warp running ahead to its next barrier, copies landing at once.
template <class T, int D>
void expect_cases_match(const std::vector<test::AttentionCase>& all, uint32_t seed) {
  std::mt19937 rng(seed);
  for (int schedule = 0; schedule < 3; ++schedule) {
    const char* names[] = {"warps in step, copies land at once",
                           "warps in step, copies land at their wait",
                           "warps run ahead, copies land at once"};
    SCOPED_TRACE(names[schedule]);
    cuda_emulation::state.late_copies = schedule == 1;
    cuda_emulation::state.warps_run_ahead = schedule == 2;
    for (const auto& c : all) expect_kernels_match<T, D>(c, rng);
  }
}

TEST(FlashAttentionEmulated, Bf16HeadDim64) {
  expect_cases_match<__nv_bfloat16, 64>(cases(), 81);
}
TEST(FlashAttentionEmulated, F16HeadDim128) {
  expect_cases_match<__half, 128>(cases(), 82);
}
TEST(FlashAttentionEmulated, OtherPairings) {
  expect_cases_match<__half, 64>({cases()[5]}, 83);
  expect_cases_match<__nv_bfloat16, 128>({cases()[4]}, 84);
}

}  // namespace
}  // namespace qkv
