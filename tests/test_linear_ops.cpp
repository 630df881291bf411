// matmul, linear and broadcasting arithmetic against PyTorch, plus finite differences.
// Tolerances (norm-wise relative error against PyTorch in float64): 1e-5 for elementwise ops,
// 1e-4 for ops that reduce (matmul, linear, broadcast gradients).
#include <gtest/gtest.h>

#include "support/gradcheck.h"
#include "support/op_compare.h"

namespace qkv::test {
namespace {

TEST(Matmul, MatchesTorchForTransposesAndBatches) {
  Rng rng(1);
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (Shape lead : {Shape{}, Shape{3}, Shape{2, 3}}) {
        int64_t m = 7, k = 13, n = 5;
        Shape sa = lead, sb = lead;
        sa.insert(sa.end(), {ta ? k : m, ta ? m : k});
        sb.insert(sb.end(), {tb ? n : k, tb ? k : n});
        compare_with_torch(
            "matmul", {{"a", randn(sa, rng)}, {"b", randn(sb, rng)}},
            {{"trans_a", ta}, {"trans_b", tb}},
            [&](auto& v) { return matmul(v["a"], v["b"], ta, tb); }, 1e-5, 1e-5, rng);
      }
}

TEST(Linear, MatchesTorchWithAndWithoutBias) {
  Rng rng(2);
  for (Shape xs : {Shape{5, 8}, Shape{2, 3, 8}, Shape{1, 1, 8}}) {
    TensorMap in{{"x", randn(xs, rng)}, {"w", randn({6, 8}, rng)}, {"bias", randn({6}, rng)}};
    compare_with_torch(
        "linear", in, {}, [](auto& v) { return linear(v["x"], v["w"], v["bias"]); }, 1e-5, 1e-5,
        rng);
    in.erase("bias");
    compare_with_torch(
        "linear", in, {}, [](auto& v) { return linear(v["x"], v["w"], Var()); }, 1e-5, 1e-5, rng);
  }
}

TEST(Broadcast, AddAndMulMatchTorch) {
  Rng rng(3);
  std::vector<std::pair<Shape, Shape>> cases = {
      {{4, 5}, {4, 5}}, {{2, 3, 5}, {5}}, {{2, 3, 5}, {3, 1}}, {{2, 1, 5}, {1, 4, 1}}, {{7}, {1}}};
  for (auto& [sa, sb] : cases) {
    TensorMap in{{"a", randn(sa, rng)}, {"b", randn(sb, rng)}};
    compare_with_torch(
        "add", in, {}, [](auto& v) { return add(v["a"], v["b"]); }, 1e-5, 1e-5, rng);
    compare_with_torch(
        "mul", in, {}, [](auto& v) { return mul(v["a"], v["b"]); }, 1e-5, 1e-5, rng);
  }
  compare_with_torch(
      "scale", {{"x", randn({3, 4}, rng)}}, {{"s", 0.37}},
      [](auto& v) { return scale(v["x"], 0.37f); }, 1e-5, 1e-5, rng);
}

TEST(Broadcast, RejectsIncompatibleShapes) {
  EXPECT_THROW(ops::add(Tensor::zeros({2, 3}), Tensor::zeros({4})), std::invalid_argument);
  EXPECT_THROW(ops::matmul(Tensor::zeros({2, 3}), false, Tensor::zeros({4, 5}), false),
               std::invalid_argument);
}

TEST(Gradcheck, LinearAndArithmetic) {
  Rng rng(4);
  gradcheck("linear", [](auto& v) { return linear(v[0], v[1], v[2]); },
            {randn({3, 4}, rng), randn({5, 4}, rng), randn({5}, rng)});
  gradcheck("matmul^T", [](auto& v) { return matmul(v[0], v[1], true, false); },
            {randn({2, 4, 3}, rng), randn({2, 4, 5}, rng)});
  gradcheck("mul broadcast", [](auto& v) { return mul(v[0], v[1]); },
            {randn({2, 3, 4}, rng), randn({3, 1}, rng)});
}

TEST(Autograd, TensorUsedTwiceAccumulatesBothGradients) {
  // y = x * x + x: dy/dx = 2x + 1.
  Var x(Tensor::from_vector(std::vector<float>{1.f, -2.f, 3.f}, {3}), true);
  Tape tape;
  Var loss;
  {
    Recording rec(tape);
    loss = sum(add(mul(x, x), x));
  }
  tape.backward(loss);
  EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{3.f, -3.f, 7.f}));
}

}  // namespace
}  // namespace qkv::test
