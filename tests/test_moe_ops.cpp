// The ops the Mixture-of-Experts layer is built from, against PyTorch (float64) and finite
// differences: logsumexp (the router z-loss) and the row gather / scatter-add / slice that group
// tokens by expert and combine them. Tolerances (norm-wise relative error against PyTorch): 1e-6
// for copies (gather, slice: exact in f32), 1e-5 for logsumexp and its gradient and for the
// scatter-add's sums. linear_in_f32 is linear without bias, bit for bit, on the CPU.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "autograd/tape.h"
#include "ops/ops.h"
#include "ops/precision.h"
#include "support/gradcheck.h"
#include "support/op_compare.h"

namespace qkv::test {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

Tensor index_of(const std::vector<int32_t>& v) {
  return Tensor::from_vector(v, {int64_t(v.size())});
}

TEST(Logsumexp, MatchesTorchIncludingLargeInputs) {
  Rng rng(21);
  const std::vector<Shape> shapes = {{3, 7, 33}, {1, 1}, {5, 1000}, {64, 8}, {17}};
  // 1e4: exp overflows without the shift by the row's maximum.
  for (const Shape& shape : shapes)
    for (float magnitude : {1.f, 50.f, 1e4f})
      compare_with_torch(
          "logsumexp", {{"x", randn(shape, rng, magnitude)}}, {},
          [](auto& v) { return logsumexp(v["x"]); }, 1e-5, 1e-5, rng);
}

TEST(Logsumexp, RowsOfMinusInfinity) {
  // Row 0: only -inf -> -inf, and no gradient (PyTorch's is NaN there). Row 1: the -inf entries
  // get no weight. Row 2: finite, near the float range's top.
  Tensor x = Tensor::from_vector(
      std::vector<float>{-kInf, -kInf, -kInf, 1.f, -kInf, 2.f, 3e38f, 3e38f, -3e38f}, {3, 3});
  Tensor y = ops::logsumexp_forward(x);
  Tensor dy = Tensor::from_vector(std::vector<float>{0.5f, 2.f, -1.f}, {3});
  TensorMap want = torch_reference("logsumexp", {{"x", x}, {"dout", dy}});
  std::vector<float> got_y = y.to_vector(), want_y = want["out"].to_vector();
  EXPECT_EQ(got_y[0], -kInf);
  EXPECT_EQ(want_y[0], -kInf);
  EXPECT_NEAR(got_y[1], want_y[1], 1e-6);
  EXPECT_NEAR(got_y[2], want_y[2], 1e-6 * want_y[2]);

  // Backward accumulates into dx.
  Tensor dx = Tensor::full({3, 3}, 0.25f);
  ops::logsumexp_backward(dy, x, y, dx);
  std::vector<float> got_dx = dx.to_vector(), want_dx = want["d_x"].to_vector();
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(got_dx[i], 0.25f) << "row of -inf, " << i;
  EXPECT_EQ(got_dx[4], 0.25f) << "-inf entry";
  for (size_t i = 3; i < 9; ++i) EXPECT_NEAR(got_dx[i], 0.25f + want_dx[i], 1e-6) << i;
}

TEST(Logsumexp, RejectsAMismatchedGradient) {
  Tensor x = Tensor::zeros({4, 3}), y = ops::logsumexp_forward(x), dx = Tensor::zeros({4, 2});
  try {
    ops::logsumexp_backward(Tensor::zeros({4}), x, y, dx);
    FAIL() << "dx [4, 2] accepted for x [4, 3]";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("logsumexp_backward"), std::string::npos) << e.what();
  }
}

TEST(GatherRows, MatchesTorchWithRepeatedIndices) {
  Rng rng(22);
  // x [N, ...] and an index with repeats (their gradients add up) and rows left out.
  std::vector<std::pair<Shape, std::vector<int32_t>>> cases = {
      {{5, 3}, {4, 0, 4, 4, 2}},
      {{1, 1}, {0, 0, 0}},
      {{6, 2, 3}, {5, 1}},
      {{40, 33}, {39, 0, 7, 7, 12, 39, 3, 3, 3, 20, 21}}};
  for (auto& [shape, index] : cases)
    compare_with_torch(
        "gather_rows", {{"x", randn(shape, rng)}, {"index", index_of(index)}}, {},
        [](auto& v) { return gather_rows(v["x"], v["index"].value()); }, 1e-6, 1e-6, rng);
}

TEST(ScatterAddRows, MatchesTorchRepeatedIndicesAccumulate) {
  Rng rng(23);
  // {rows, index}: repeated targets add up, untouched rows stay zero.
  std::vector<std::pair<int64_t, std::vector<int32_t>>> cases = {
      {4, {3, 0, 3, 3}}, {1, {0, 0}}, {7, {6}}, {30, {1, 29, 1, 5, 5, 5, 0, 17, 29, 2, 1}}};
  for (auto& [rows, index] : cases)
    for (int64_t d : {1, 9, 65}) {
      Tensor x = randn({int64_t(index.size()), d}, rng);
      compare_with_torch(
          "scatter_add_rows", {{"x", x}, {"index", index_of(index)}}, {{"rows", rows}},
          [rows](auto& v) { return scatter_add_rows(v["x"], v["index"].value(), rows); }, 1e-5,
          1e-6, rng);
    }
}

TEST(ScatterAddRows, IsTheAdjointOfGatherRows) {
  // <gather(x), y> = <x, scatter_add(y)> for every x, y.
  Rng rng(24);
  Tensor x = randn({9, 5}, rng), y = randn({12, 5}, rng);
  Tensor index = index_of({8, 0, 3, 3, 8, 1, 1, 1, 2, 7, 8, 0});
  Var gathered = gather_rows(Var(x), index), scattered = scatter_add_rows(Var(y), index, 9);
  float left = sum(mul(gathered, Var(y))).value().item();
  float right = sum(mul(Var(x), scattered)).value().item();
  EXPECT_NEAR(left, right, 1e-5 * std::fabs(left));
}

TEST(RowIndices, OutsideTheRowsAreAClearError) {
  Tensor x = Tensor::zeros({4, 3});
  try {
    gather_rows(Var(x), index_of({0, 4}));
    FAIL() << "index 4 of 4 rows accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("index 4 outside [0, 4)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(scatter_add_rows(Var(Tensor::zeros({2, 3})), index_of({1, 5}), 4),
               std::invalid_argument);
  EXPECT_THROW(scatter_add_rows(Var(Tensor::zeros({3, 3})), index_of({1, 2}), 4),
               std::invalid_argument);  // 3 rows of x, 2 indices
}

TEST(SliceRows, MatchesTorch) {
  Rng rng(25);
  std::vector<std::tuple<Shape, int64_t, int64_t>> cases = {
      {{6, 4}, 0, 6}, {{6, 4}, 2, 5}, {{6, 4}, 5, 6}, {{7, 3, 2}, 1, 3}, {{1, 9}, 0, 1}};
  for (auto& [shape, begin, end] : cases)
    compare_with_torch(
        "slice_rows", {{"x", randn(shape, rng)}}, {{"begin", begin}, {"end", end}},
        [begin, end](auto& v) { return slice_rows(v["x"], begin, end); }, 1e-6, 1e-6, rng);
}

TEST(SliceRows, OverlappingSlicesAddTheirGradients) {
  // y = [x[0:3]; x[1:4]; x[2:3]] -> dx[r] = sum of the gradients of every copy of row r.
  Tensor x = Tensor::zeros({5, 2});
  Var xv(x, true);
  Tape tape;
  Var loss;
  {
    Recording rec(tape);
    Var y =
        concat({slice_rows(xv, 0, 3), slice_rows(xv, 1, 4), slice_rows(xv, 2, 3)}, 0);  // [7, 2]
    std::vector<float> w(14);
    for (size_t i = 0; i < w.size(); ++i) w[i] = float(i + 1);
    loss = sum(mul(y, Var(Tensor::from_vector(w, {7, 2}))));
  }
  tape.backward(loss);
  // Rows of y: x0 x1 x2 | x1 x2 x3 | x2, weights 1..14 two per row.
  std::vector<float> want = {1, 2, 3 + 7, 4 + 8, 5 + 9 + 13, 6 + 10 + 14, 11, 12, 0, 0};
  EXPECT_EQ(xv.grad().to_vector(), want);
}

// linear_in_f32 is the f32 linear layer bit for bit whatever the autocast scope, where the
// linear layer itself multiplies in bf16 inside a bf16 scope (on the CPU too).
TEST(LinearInF32, IsTheF32LinearWithoutBiasBitForBit) {
  Rng rng(26);
  Tensor x = randn({3, 5, 24}, rng), w = randn({8, 24}, rng), dy = randn({3, 5, 8}, rng);
  auto run = [&](ops::MatmulPrecision precision, bool in_f32) {
    ops::AutocastScope scope(precision);
    Var xv(x, true), wv(w, true);
    Tape tape;
    Var loss;
    {
      Recording rec(tape);
      Var y = in_f32 ? linear_in_f32(xv, wv) : linear(xv, wv, Var());
      loss = sum(mul(y, Var(dy)));
    }
    tape.backward(loss);
    return std::vector<std::vector<float>>{loss.value().to_vector(), xv.grad().to_vector(),
                                           wv.grad().to_vector()};
  };
  auto f32 = run(ops::MatmulPrecision::f32, false);
  EXPECT_EQ(run(ops::MatmulPrecision::f32, true), f32);
  EXPECT_EQ(run(ops::MatmulPrecision::bf16, true), f32);
  EXPECT_NE(run(ops::MatmulPrecision::bf16, false), f32);
}

TEST(Gradcheck, MoeOps) {
  Rng rng(27);
  gradcheck("logsumexp", [](auto& v) { return logsumexp(v[0]); }, {randn({4, 9}, rng, 2.f)});
  Tensor index = index_of({3, 0, 3, 5, 3, 1});
  gradcheck("gather_rows", [&](auto& v) { return gather_rows(v[0], index); }, {randn({6, 7}, rng)});
  gradcheck("scatter_add_rows", [&](auto& v) { return scatter_add_rows(v[0], index, 7); },
            {randn({6, 5}, rng)});
  gradcheck("slice_rows",
            [](auto& v) {
              return concat({slice_rows(v[0], 1, 4), slice_rows(v[0], 0, 2)}, 0);
            },
            {randn({5, 3}, rng)});
}

}  // namespace
}  // namespace qkv::test
