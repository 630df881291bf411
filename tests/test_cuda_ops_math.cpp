// CUDA kernels against the CPU kernels, through ops/ops.h: matrix products, the linear layer,
// broadcast arithmetic and its reductions, whole-tensor sums, Tensor::cast / fill on cuda.
// Tolerance unless a test says otherwise: elementwise |cuda - cpu| <= 1e-5 * (|cpu| + 1).
// Outputs the kernel must overwrite start as NaN; gradients start random (backward kernels
// accumulate). Skipped in builds without CUDA
// (fails in one with CUDA but no device).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "ops/ops.h"
#include "support/cuda_compare.h"

namespace qkv::test {
namespace {

struct GemmCase {
  int64_t m, n, k;
};
// Two f32 sums of the same k products, added in different orders (each BLAS blocks its own way,
// and OpenBLAS picks its kernels by CPU), differ by a random walk of k roundings of the partial
// sums: about sqrt(k) * 2^-24 * sqrt(k) / 3 here (1030 products gave 2.3e-5 on an AVX-512
// Xeon). So the tolerance grows with sqrt(k) from 1e-5 at k = 32; a wrong or missing product
// is off by ~0.1 or more.
double sum_order_tolerance(int64_t k) {
  return 1e-5 * std::max(1.0, std::sqrt(double(k) / 32));
}

const std::vector<GemmCase> kGemmCases = {{1, 1, 1},     {7, 3, 65},       {33, 511, 17},
                                          {1000, 65, 1}, {130, 1025, 300}, {1, 1024, 1030}};

TEST(CudaGemm, EveryTransposeAndBetaMatchesCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(1);
  for (auto [m, n, k] : kGemmCases)
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (float beta : {0.f, 0.5f}) {
          Tensor a = uniform(ta ? Shape{k, m} : Shape{m, k}, rng, -1.f, 1.f);
          Tensor b = uniform(tb ? Shape{n, k} : Shape{k, n}, rng, -1.f, 1.f);
          Tensor c = uniform({m, n}, rng);
          // beta 0: c is not read, so NaN there must not leak into the result.
          Tensor c_cuda = beta == 0.f ? nan_on_cuda({m, n}) : on_cuda(c);
          ops::gemm(a, ta, b, tb, c, 1.25f, beta);
          ops::gemm(on_cuda(a), ta, on_cuda(b), tb, c_cuda, 1.25f, beta);
          EXPECT_TRUE(close_elementwise(c_cuda, c, sum_order_tolerance(k)))
              << m << "x" << n << "x" << k << " ta " << ta << " tb " << tb << " beta " << beta;
        }
}

TEST(CudaGemm, BatchedAndMatmulMatchCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(2);
  for (Shape lead : {Shape{1}, Shape{3}, Shape{2, 5}})
    for (auto [m, n, k] : std::vector<GemmCase>{{1, 1, 1}, {7, 33, 65}, {64, 17, 3}})
      for (bool ta : {false, true})
        for (bool tb : {false, true}) {
          Shape sa = lead, sb = lead, sc = lead;
          sa.insert(sa.end(), {ta ? k : m, ta ? m : k});
          sb.insert(sb.end(), {tb ? n : k, tb ? k : n});
          sc.insert(sc.end(), {m, n});
          Tensor a = uniform(sa, rng, -1.f, 1.f), b = uniform(sb, rng, -1.f, 1.f);
          Tensor c = uniform(sc, rng), c_cuda = on_cuda(c);
          ops::batched_gemm(a, ta, b, tb, c, 0.75f, 1.f);
          ops::batched_gemm(on_cuda(a), ta, on_cuda(b), tb, c_cuda, 0.75f, 1.f);
          EXPECT_TRUE(close_elementwise(c_cuda, c)) << shape_str(sa) << " @ " << shape_str(sb);
          EXPECT_TRUE(close_elementwise(ops::matmul(on_cuda(a), ta, on_cuda(b), tb),
                                        ops::matmul(a, ta, b, tb)));
        }
}

TEST(CudaLinear, ForwardAndAccumulatingBackwardMatchCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(3);
  // {x shape, out}: up to 64 rows the CPU runs its packed kernel, above them the BLAS.
  std::vector<std::pair<Shape, int64_t>> cases = {{{1, 1}, 1},        {{7, 65}, 3},
                                                  {{2, 33, 511}, 65}, {{1000, 3}, 1024},
                                                  {{64, 130}, 17},    {{3, 5, 1025}, 7}};
  for (auto& [xs, out] : cases)
    for (bool with_bias : {true, false}) {
      Tensor x = uniform(xs, rng, -1.f, 1.f), w = uniform({out, xs.back()}, rng, -1.f, 1.f);
      Tensor bias = with_bias ? uniform({out}, rng) : Tensor();
      Tensor bias_cuda = with_bias ? on_cuda(bias) : Tensor();
      Tensor y = ops::linear_forward(x, w, bias);
      EXPECT_TRUE(close_elementwise(ops::linear_forward(on_cuda(x), on_cuda(w), bias_cuda), y))
          << shape_str(xs) << " -> " << out;
      Tensor dy = uniform(y.shape(), rng);
      Tensor dx = uniform(x.shape(), rng), dw = uniform(w.shape(), rng);
      Tensor db = with_bias ? uniform({out}, rng) : Tensor();
      Tensor dx_c = on_cuda(dx), dw_c = on_cuda(dw), db_c = with_bias ? on_cuda(db) : Tensor();
      ops::linear_backward(dy, x, w, dx, dw, db);
      ops::linear_backward(on_cuda(dy), on_cuda(x), on_cuda(w), dx_c, dw_c, db_c);
      // Each gradient is a sum over the output features (dx) or the rows (dw, dbias), up to
      // 1024 terms: an element's rounding error is in units of its partial sums, which can be
      // far larger than the element; hence norm-wise.
      EXPECT_TRUE(close_normwise(dx_c, dx)) << "dx " << shape_str(xs);
      EXPECT_TRUE(close_normwise(dw_c, dw)) << "dw " << shape_str(xs);
      if (with_bias) {
        EXPECT_TRUE(close_normwise(db_c, db)) << "dbias " << shape_str(xs);
      }
    }
}

// Pairs of shapes that broadcast, ranks 1 to 4.
const std::vector<std::pair<Shape, Shape>> kBroadcast = {
    {{7, 65}, {65}},        {{3, 1, 5}, {1, 4, 1}}, {{1}, {33, 3}},     {{2, 3, 4, 5}, {3, 1, 5}},
    {{1000, 3}, {1000, 1}}, {{1025}, {1025}},       {{1, 511}, {7, 1}}, {{4, 1, 6}, {6}}};

TEST(CudaElementwise, BroadcastAddAndMulMatchCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(4);
  for (auto& [sa, sb] : kBroadcast) {
    Tensor a = uniform(sa, rng), b = uniform(sb, rng);
    EXPECT_TRUE(close_elementwise(ops::add(on_cuda(a), on_cuda(b)), ops::add(a, b)))
        << shape_str(sa) << " + " << shape_str(sb);
    EXPECT_TRUE(close_elementwise(ops::mul(on_cuda(a), on_cuda(b)), ops::mul(a, b)))
        << shape_str(sa) << " * " << shape_str(sb);
  }
}

TEST(CudaElementwise, MulBackwardAccumulatesIntoBothOperands) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(5);
  for (auto& [sa, sb] : kBroadcast)
    for (int wanted = 0; wanted < 3; ++wanted) {  // both, only da, only db
      Tensor a = uniform(sa, rng), b = uniform(sb, rng);
      Tensor dy = uniform(ops::broadcast_shape(sa, sb), rng);
      Tensor da = wanted != 2 ? uniform(sa, rng) : Tensor();
      Tensor db = wanted != 1 ? uniform(sb, rng) : Tensor();
      Tensor da_c = da.defined() ? on_cuda(da) : Tensor(),
             db_c = db.defined() ? on_cuda(db) : Tensor();
      ops::mul_backward(dy, a, b, da, db);
      ops::mul_backward(on_cuda(dy), on_cuda(a), on_cuda(b), da_c, db_c);
      if (da.defined()) {
        EXPECT_TRUE(close_elementwise(da_c, da)) << "da " << shape_str(sa);
      }
      if (db.defined()) {
        EXPECT_TRUE(close_elementwise(db_c, db)) << "db " << shape_str(sb);
      }
    }
}

TEST(CudaElementwise, ReduceToAccumulatesOverBroadcastAxes) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(6);
  // {dy shape, da shape}: rows (a bias), leading 1s, inner and outer axes, the same shape.
  std::vector<std::pair<Shape, Shape>> cases = {
      {{7, 65}, {65}},        {{7, 65}, {1, 65}},
      {{3, 4, 5}, {3, 1, 5}}, {{3, 4, 5}, {4, 1}},
      {{1000, 3}, {1000, 1}}, {{2, 3, 4, 5}, {3, 1, 1}},
      {{5, 5}, {5, 5}},       {{1030, 513}, {513}},
      {{1, 1}, {1}},          {{2, 1, 2049}, {1, 1, 2049}},
      {{33, 7}, {1}},         {{70, 2}, {2}}};  // rows in chunks of 64, a partial last one
  for (auto& [sy, sa] : cases) {
    Tensor dy = uniform(sy, rng), da = uniform(sa, rng), da_c = on_cuda(da), again = on_cuda(da);
    ops::reduce_to(dy, da);
    ops::reduce_to(on_cuda(dy), da_c);
    ops::reduce_to(on_cuda(dy), again);
    // Long column sums add in another order than the CPU's (row chunks): norm-wise.
    EXPECT_TRUE(close_normwise(da_c, da)) << shape_str(sy) << " -> " << shape_str(sa);
    EXPECT_TRUE(identical(again, da_c)) << "not reproducible: " << shape_str(sy);
  }
  // Many chunks: small integers, whose sums are exact in any order (the CPU's own f32 sum of
  // 300000 random floats would be off by more than the tolerance).
  Tensor dy = random_ids({300000, 3}, rng, -4, 5).cast(DType::f32);
  Tensor da = random_ids({3}, rng, -4, 5).cast(DType::f32), da_c = on_cuda(da);
  ops::reduce_to(dy, da);
  ops::reduce_to(on_cuda(dy), da_c);
  EXPECT_TRUE(identical(da_c, da)) << "300000 rows";
}

TEST(CudaElementwise, ScaleAxpyAndSumsMatchCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(7);
  for (int64_t n : {int64_t(1), int64_t(7), int64_t(1000), int64_t(100003), int64_t(3000017)}) {
    Tensor x = uniform({n}, rng), y = uniform({n}, rng), y_c = on_cuda(y);
    EXPECT_TRUE(close_elementwise(ops::scale(on_cuda(x), -1.5f), ops::scale(x, -1.5f))) << n;
    ops::axpy(0.3f, x, y);
    ops::axpy(0.3f, on_cuda(x), y_c);
    EXPECT_TRUE(close_elementwise(y_c, y)) << n;
    // Both sum in double; the float results agree to float rounding.
    Tensor s = ops::sum_all(on_cuda(x));
    EXPECT_EQ(s.device(), Device::cuda);
    EXPECT_TRUE(close_elementwise(s, ops::sum_all(x), 1e-6)) << n;
    double sq = ops::sum_squares(on_cuda(x)), sq_cpu = ops::sum_squares(x);
    EXPECT_NEAR(sq, sq_cpu, 1e-10 * sq_cpu) << n;  // double sums in another order
  }
  // A list (the gradient norm's): one wait on cuda, the same total.
  std::vector<Tensor> xs = {uniform({3, 5}, rng), uniform({1}, rng), uniform({70001}, rng)};
  std::vector<Tensor> xs_c = {on_cuda(xs[0]), on_cuda(xs[1]), on_cuda(xs[2])};
  double want = ops::sum_squares(xs);
  EXPECT_NEAR(ops::sum_squares(xs_c), want, 1e-10 * want);
  EXPECT_EQ(ops::sum_squares(std::vector<Tensor>{}), 0.0);
}

// Floats that exercise rounding: halfway cases, subnormals, overflow, infinities, NaN, -0.
std::vector<float> awkward_floats(Rng& rng) {
  std::vector<float> v = {0.f,
                          -0.f,
                          1.f,
                          -1.f,
                          65504.f,
                          65519.f,
                          65520.f,
                          1e-8f,
                          6e-8f,
                          3e-8f,
                          6.1e-5f,
                          -6.1e-5f,
                          1e-40f,
                          -1e-45f,
                          3e38f,
                          -3e38f,
                          1.00390625f,
                          1.01171875f,
                          2049.f,
                          2051.f,
                          INFINITY,
                          -INFINITY,
                          std::numeric_limits<float>::quiet_NaN()};
  Tensor u = uniform({1000}, rng, -70000.f, 70000.f);
  for (float f : u.to_vector()) v.push_back(f);
  Tensor small = uniform({1000}, rng, -1e-4f, 1e-4f);
  for (float f : small.to_vector()) v.push_back(f);
  return v;
}

TEST(CudaTensor, CastsAreBitIdenticalToCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(8);
  std::vector<float> values = awkward_floats(rng);
  Tensor x = Tensor::from_vector(values, {int64_t(values.size())});
  for (DType half : {DType::bf16, DType::f16}) {
    Tensor h = x.cast(half);
    Tensor h_c = on_cuda(x).cast(half);
    EXPECT_EQ(h_c.device(), Device::cuda);
    EXPECT_TRUE(identical(h_c, h)) << "f32 -> " << dtype_name(half);
    EXPECT_TRUE(identical(on_cuda(h).cast(DType::f32), h.cast(DType::f32)))
        << dtype_name(half) << " -> f32";
  }
  Tensor ids = random_ids({1001}, rng, -100000, 100000);
  EXPECT_TRUE(identical(on_cuda(ids).cast(DType::f32), ids.cast(DType::f32))) << "i32 -> f32";
  Tensor wide = Tensor::empty({5}, DType::i64);
  int64_t w[5] = {0, -1, 7, int64_t(1) << 33, -(int64_t(1) << 40) + 3};
  std::memcpy(wide.raw(), w, sizeof(w));
  EXPECT_TRUE(identical(on_cuda(wide).cast(DType::i32), wide.cast(DType::i32))) << "i64 -> i32";
  EXPECT_THROW(on_cuda(ids).cast(DType::bf16), std::invalid_argument);
}

TEST(CudaTensor, FillZeroAndCopiesRoundTrip) {
  QKV_SKIP_WITHOUT_CUDA();
  for (int64_t n : {int64_t(1), int64_t(1000), int64_t(100003)}) {
    Tensor f = Tensor::empty({n}, DType::f32, Device::cuda);
    f.fill(-2.5f);
    EXPECT_TRUE(identical(f, Tensor::full({n}, -2.5f)));
    Tensor i = Tensor::empty({n}, DType::i32, Device::cuda);
    i.fill(7.f);
    Tensor want = Tensor::empty({n}, DType::i32);
    want.fill(7.f);
    EXPECT_TRUE(identical(i, want));
    f.zero();
    EXPECT_TRUE(identical(f, Tensor::zeros({n})));
  }
  // Host -> device -> device -> host, with a kernel in between: all ordered on one stream.
  Rng rng(9);
  Tensor x = uniform({4099}, rng);
  Tensor a = on_cuda(x), b = a.clone();
  Tensor twice = ops::scale(b, 2.f);
  EXPECT_TRUE(identical(twice, ops::scale(x, 2.f)));
  EXPECT_TRUE(identical(a, x));
}

}  // namespace
}  // namespace qkv::test
