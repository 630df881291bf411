// The linear layer on a packed weight (ops::linear_packed_forward: decoding steps, and
// ops::linear_forward up to 64 rows or on a small weight, and its input gradient on a small
// weight) against the BLAS on odd sizes, and against PyTorch; the kernels of every instruction
// set this CPU runs against each other.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "ops/cpu/low_precision.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"
#include "support/torch_ref.h"

namespace qkv::test {
namespace {

struct Size {
  int64_t m, n, k;
};

// want [m, n] (+)= x [m, k] @ w [n, k]^T by the BLAS.
void blas_product(const Tensor& x, const Tensor& w, Tensor& want) {
  ops::gemm(x.reshape({want.size(0), w.size(1)}), false, w, true, want, 1.f, 1.f);
}

void expect_near(const Tensor& got, const Tensor& want, int64_t k, const std::string& what) {
  ASSERT_EQ(got.numel(), want.numel()) << what;
  for (int64_t i = 0; i < want.numel(); ++i)
    ASSERT_NEAR(got.data<float>()[i], want.data<float>()[i], 1e-5 * std::sqrt(double(k)))
        << what << " at " << i;
}

std::string size_name(const Size& s) {
  return std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k);
}

TEST(LinearPacked, MatchesBlasOnOddSizes) {
  auto* const fill_rows = ops::find_kernel<ops::kernels::fill_rows, float>(Device::cpu);
  Rng rng(11);
  // Rows 1..7 and 13 (the block of 6 and every tail), outputs around the panel of 16, inputs
  // off the unrolling; 64 x 1031 x 300 is past the threshold for threads. Past 64 rows the rows
  // go in chunks: one (65), several with a short last one (700 rows of 64 inputs: chunks of 60;
  // 301 of 129: of 30), and chunks of one block where a row is larger than a chunk's budget;
  // no rows at all.
  for (Size s : {Size{1, 1, 1}, Size{1, 15, 8}, Size{2, 17, 9}, Size{3, 33, 31}, Size{4, 16, 3},
                 Size{5, 19, 7}, Size{6, 32, 5}, Size{7, 47, 30}, Size{13, 16, 2},
                 Size{64, 1031, 300}, Size{65, 20, 64}, Size{700, 33, 64}, Size{301, 17, 129},
                 Size{70, 5, 5000}, Size{0, 5, 3}}) {
    Tensor x = randn({s.m, 1, s.k}, rng), w = randn({s.n, s.k}, rng), bias = randn({s.n}, rng);
    Tensor packed = ops::pack_linear_weight(w);
    for (const Tensor& b : {Tensor(), bias}) {
      Tensor want = Tensor::zeros({s.m, s.n});  // b + x @ w^T by the BLAS
      if (b.defined()) fill_rows(want.data<float>(), b.data<float>(), s.m, s.n);
      blas_product(x, w, want);
      Tensor got = ops::linear_packed_forward(x, packed, s.n, b);
      ASSERT_EQ(got.shape(), (Shape{s.m, 1, s.n}));
      expect_near(got, want, s.k, size_name(s) + (b.defined() ? " with bias" : ""));
    }
  }
}

// The kernel adds to y where asked (a gradient already there), in few rows and in chunks.
TEST(LinearPacked, AddsToTheOutput) {
  auto* const linear_packed = ops::find_kernel<ops::kernels::linear_packed, float>(Device::cpu);
  Rng rng(14);
  for (Size s : {Size{3, 40, 9}, Size{500, 24, 64}}) {
    Tensor x = randn({s.m, s.k}, rng), w = randn({s.n, s.k}, rng), y = randn({s.m, s.n}, rng);
    Tensor want = y.clone();
    blas_product(x, w, want);
    linear_packed(x.data<float>(), ops::pack_linear_weight(w).data<float>(), nullptr, s.m, s.n, s.k,
                  true, y.data<float>());
    expect_near(y, want, s.k, size_name(s));
  }
}

// linear's input gradient dy @ w by the packed kernel (a weight of up to kPackedWeightMax
// elements) and by the BLAS (a larger one): as a new tensor, and added to one already there.
TEST(LinearPacked, InputGradientOfSmallAndLargeWeights) {
  Rng rng(15);
  for (Size s : {Size{300, 40, 48}, Size{100, 300, 200}}) {  // rows, in, out
    Tensor dy = randn({s.m, 1, s.k}, rng), w = randn({s.k, s.n}, rng);
    Tensor want = Tensor::zeros({s.m, s.n});
    ops::gemm(dy.reshape({s.m, s.k}), false, w, false, want, 1.f, 1.f);
    Tensor got = ops::linear_input_grad(dy, w);
    ASSERT_EQ(got.shape(), (Shape{s.m, 1, s.n}));
    expect_near(got, want, s.k, "new " + size_name(s));
    Tensor dx = randn({s.m, 1, s.n}, rng), none;
    Tensor dx_want = dx.clone().reshape({s.m, s.n});
    ops::gemm(dy.reshape({s.m, s.k}), false, w, false, dx_want, 1.f, 1.f);
    ops::linear_backward(dy, Tensor::zeros({s.m, 1, s.n}), w, dx, none, none);
    expect_near(dx, dx_want, s.k, "added " + size_name(s));
  }
}

// AVX-512's passes of two panels and blocks of up to 12 rows (rows 1..13, 25 and 150 in
// chunks, an odd number of panels) sum the same products in the same order as the 8-float vectors:
// the same bits where those have FMA too, as AVX-512 has.
TEST(LinearPacked, EveryIsaGivesTheSameSums) {
  Rng rng(13);
  for (int64_t m : {1, 2, 3, 5, 6, 7, 11, 12, 13, 25, 150})
    for (int64_t n : {7, 16, 31, 47, 64}) {
      int64_t k = 2 + m * n % 37;
      Tensor x = randn({m, k}, rng), w = randn({n, k}, rng), bias = randn({n}, rng);
      Tensor packed = ops::pack_linear_weight(w);
      std::vector<float> first;
      for (ops::cpu::Isa isa : ops::cpu::isas_up_to(ops::cpu::cpu_isa())) {
        std::vector<float> y(size_t(m * n));
        ops::cpu::linear_f32_packed(x.data<float>(), packed.data<float>(), bias.data<float>(), m, n,
                                    k, isa, false, y.data());
        if (first.empty()) first = y;
        for (size_t i = 0; i < y.size(); ++i) {
#ifdef __FMA__
          ASSERT_EQ(y[i], first[i])
#else
          ASSERT_NEAR(y[i], first[i], 1e-6 * std::sqrt(double(k)))
#endif
              << ops::cpu::isa_name(isa) << " " << m << "x" << n << "x" << k << " at " << i;
        }
      }
    }
}

TEST(LinearPacked, MatchesTorch) {
  Rng rng(12);
  Tensor x = randn({5, 37}, rng), w = randn({21, 37}, rng), bias = randn({21}, rng);
  Tensor want = torch_reference("linear", {{"x", x}, {"w", w}, {"bias", bias}}).at("out");
  expect_close(ops::linear_packed_forward(x, ops::pack_linear_weight(w), 21, bias), want, 1e-5,
               "linear_packed");
}

TEST(LinearPacked, RejectsAWeightOfOtherSize) {
  Tensor packed = ops::pack_linear_weight(Tensor::zeros({20, 8}));
  EXPECT_THROW(ops::linear_packed_forward(Tensor::zeros({2, 9}), packed, 20, Tensor()),
               std::invalid_argument);
  EXPECT_THROW(ops::linear_packed_forward(Tensor::zeros({2, 8}), packed, 40, Tensor()),
               std::invalid_argument);
}

}  // namespace
}  // namespace qkv::test
