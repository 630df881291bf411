// cpu::gemm_bf16 (ops/cpu/low_precision.h), the product of training's bf16 autocast on the CPU,
// against float64 on every Isa this CPU runs (below avx512bf16: the rounded operands through the
// f32 gemm; QKV_CPU_ISA caps it the same way): every transpose, leading dimensions past the
// width, shapes off the 12 x 32 tiles and past a packed block of the summed dimension, alpha and
// beta, 1 and 2 threads.
//
// Bound: the operands rounded to bf16 (ties to even) make products exact in f32, so against the
// float64 product of the rounded operands only the f32 sums and the final multiply-adds err:
//   |c - (alpha sum_i ab_i bb_i + beta c0)| <= (k + 2) 2^-24 (|alpha| sum_i |ab_i bb_i| + |beta
//   c0|)
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "ops/cpu/low_precision.h"
#include "tensor/dtype.h"

namespace qkv::test {
namespace {
using ops::cpu::Isa;

double rounded(float f) {
  return double(from_bf16(to_bf16(f)));
}

struct Case {
  bool trans_a, trans_b;
  int64_t m, n, k;
};

// c [m, n] at leading dimension ldc, after gemm_bf16 on random a and b stored with padding.
struct Product {
  Case s;
  int64_t lda, ldb, ldc;
  std::vector<float> a, b, c0;
  Product(Case s, std::mt19937& gen) : s(s) {
    std::uniform_real_distribution<float> dist(-1.f, 1.f);
    lda = (s.trans_a ? s.m : s.k) + 3;
    ldb = (s.trans_b ? s.k : s.n) + 5;
    ldc = s.n + 2;
    a.resize((s.trans_a ? s.k : s.m) * lda);
    b.resize((s.trans_b ? s.n : s.k) * ldb);
    c0.resize(s.m * ldc);
    for (std::vector<float>* v : {&a, &b, &c0})
      for (float& f : *v) f = dist(gen);
  }
  float a_at(int64_t i, int64_t p) const { return s.trans_a ? a[p * lda + i] : a[i * lda + p]; }
  float b_at(int64_t p, int64_t j) const { return s.trans_b ? b[j * ldb + p] : b[p * ldb + j]; }
  std::vector<float> run(Isa isa, float alpha, float beta) const {
    std::vector<float> c = c0;
    if (beta == 0.f) std::fill(c.begin(), c.end(), NAN);  // never read
    ops::cpu::gemm_bf16(s.trans_a, s.trans_b, s.m, s.n, s.k, alpha, a.data(), lda, b.data(), ldb,
                        beta, c.data(), ldc, isa);
    return c;
  }
};

TEST(GemmBf16, WithinTheBoundOfRoundedOperandsOnEveryIsa) {
  std::mt19937 gen(7);
  std::vector<Case> cases;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (Case shape : {Case{false, false, 29, 45, 777}, Case{false, false, 1, 1, 1},
                         Case{false, false, 12, 32, 384}, Case{false, false, 13, 70, 3},
                         Case{false, false, 40, 33, 2}})
        cases.push_back({ta, tb, shape.m, shape.n, shape.k});
  for (const Case& s : cases) {
    Product p(s, gen);
    std::vector<double> dot(s.m * s.n), mass(s.m * s.n);
    for (int64_t i = 0; i < s.m; ++i)
      for (int64_t j = 0; j < s.n; ++j)
        for (int64_t q = 0; q < s.k; ++q) {
          double t = rounded(p.a_at(i, q)) * rounded(p.b_at(q, j));
          dot[i * s.n + j] += t;
          mass[i * s.n + j] += std::fabs(t);
        }
    for (Isa isa : ops::cpu::isas_up_to(ops::cpu::cpu_isa()))
      for (int threads : {1, 2})
        for (auto [alpha, beta] : {std::pair{1.f, 0.f}, std::pair{-0.7f, 0.5f}}) {
          omp_set_num_threads(threads);
          std::vector<float> c = p.run(isa, alpha, beta);
          for (int64_t i = 0; i < s.m; ++i)
            for (int64_t j = 0; j < s.n; ++j) {
              double c0 = beta * double(p.c0[i * p.ldc + j]);
              double want = alpha * dot[i * s.n + j] + c0;
              double bound = (s.k + 2) * std::ldexp(1.0, -24) *
                             (std::fabs(alpha) * mass[i * s.n + j] + std::fabs(c0));
              ASSERT_LE(std::fabs(c[i * p.ldc + j] - want), bound)
                  << s.m << "x" << s.n << "x" << s.k << " trans " << s.trans_a << s.trans_b << " "
                  << ops::cpu::isa_name(isa) << " at " << i << "," << j;
            }
          for (int64_t i = 0; i < s.m; ++i)  // the padding past n is left alone
            for (int64_t j = s.n; j < p.ldc; ++j)
              ASSERT_TRUE(beta == 0.f ? std::isnan(c[i * p.ldc + j])
                                      : c[i * p.ldc + j] == p.c0[i * p.ldc + j]);
        }
  }
  omp_set_num_threads(2);
}

// Ties go to the even bf16 (1 + 2^-8 to 1, 1 + 3 2^-8 to 1 + 2^-6) and the bits below a bf16 are
// rounded, not cut (1 + 2^-7 - 2^-12 to 1 + 2^-7): exact sums, so equality.
TEST(GemmBf16, RoundsEachOperandToNearestEven) {
  std::vector<float> a = {1.f + std::ldexp(1.f, -8), 1.f + 3 * std::ldexp(1.f, -8),
                          1.f + std::ldexp(1.f, -7) - std::ldexp(1.f, -12)};
  std::vector<float> b = {1.f, 1.f, 1.f};
  float want = 1.f + (1.f + std::ldexp(1.f, -6)) + (1.f + std::ldexp(1.f, -7));
  for (Isa isa : ops::cpu::isas_up_to(ops::cpu::cpu_isa())) {
    float c = NAN;
    ops::cpu::gemm_bf16(false, false, 1, 1, 3, 1.f, a.data(), 3, b.data(), 1, 0.f, &c, 1, isa);
    EXPECT_EQ(c, want) << ops::cpu::isa_name(isa);
    ops::cpu::gemm_bf16(true, true, 1, 1, 3, 1.f, a.data(), 1, b.data(), 3, 0.f, &c, 1, isa);
    EXPECT_EQ(c, want) << ops::cpu::isa_name(isa) << ", transposed";
  }
}

TEST(GemmBf16, EmptySumScalesC) {
  std::vector<float> c = {1.f, -2.f, 4.f, 8.f};
  for (Isa isa : ops::cpu::isas_up_to(ops::cpu::cpu_isa())) {
    std::vector<float> got = c;
    ops::cpu::gemm_bf16(false, true, 2, 2, 0, 1.f, nullptr, 1, nullptr, 1, 0.5f, got.data(), 2,
                        isa);
    EXPECT_EQ(got, (std::vector<float>{0.5f, -1.f, 2.f, 4.f})) << ops::cpu::isa_name(isa);
  }
}

}  // namespace
}  // namespace qkv::test
