// permute, concat and split against PyTorch (pure copies: tolerance 1e-6), plus finite
// differences through each function's backward step.
#include <gtest/gtest.h>

#include "support/gradcheck.h"
#include "support/op_compare.h"

namespace qkv::test {
namespace {

TEST(Permute, MatchesTorchForManyOrders) {
  Rng rng(11);
  std::vector<std::pair<Shape, std::vector<int>>> cases = {
      {{2, 5, 3, 4}, {0, 2, 1, 3}},              // head split [B, L, H, D] -> [B, H, L, D]
      {{2, 3, 5, 4}, {0, 2, 1, 3}},              // and merge back
      {{7, 9}, {1, 0}},                          // transpose
      {{2, 3, 4, 5}, {3, 1, 0, 2}},              // the last axis moves
      {{3, 1, 4, 1, 2}, {4, 2, 0, 3, 1}},        // size-1 axes
      {{2, 3, 2, 1, 3, 2}, {5, 0, 4, 1, 3, 2}},  // rank 6
      {{6}, {0}},
      {{2, 3, 4}, {0, 1, 2}},     // identity
      {{33, 17, 65}, {2, 0, 1}},  // large enough for threads
  };
  for (auto& [shape, dims] : cases)
    compare_with_torch(
        "permute", {{"x", randn(shape, rng)}}, {{"dims", dims}},
        [&](auto& v) { return permute(v["x"], dims); }, 1e-6, 1e-6, rng);
}

TEST(Concat, MatchesTorchAlongEveryAxis) {
  Rng rng(12);
  Shape base{3, 4, 5};
  for (int axis : {0, 1, 2, -1}) {
    int a = axis < 0 ? axis + 3 : axis;
    TensorMap in;
    std::vector<int64_t> sizes = {2, 1, 3};
    for (size_t i = 0; i < sizes.size(); ++i) {
      Shape s = base;
      s[a] = sizes[i];
      std::string name = "x";  // built in steps: "x" + to_string trips a GCC 12 false warning
      name += std::to_string(i);
      in[name] = randn(s, rng);
    }
    compare_with_torch(
        "concat", in, {{"n", 3}, {"axis", axis}},
        [&](auto& v) {
          return concat({v["x0"], v["x1"], v["x2"]}, axis);
        },
        1e-6, 1e-6, rng);
  }
}

TEST(Split, EachPieceAndItsGradientMatchTorch) {
  Rng rng(13);
  Shape shape{4, 6, 5};
  for (int axis : {0, 1, 2}) {
    std::vector<int64_t> sizes = {1, shape[axis] - 3, 2};
    Tensor x = randn(shape, rng);
    for (int index = 0; index < 3; ++index)
      compare_with_torch(
          "split", {{"x", x}}, {{"sizes", sizes}, {"axis", axis}, {"index", index}},
          [&](auto& v) { return split(v["x"], sizes, axis)[index]; }, 1e-6, 1e-6, rng);
  }
}

TEST(Split, ThenConcatGivesBackTheInput) {
  Rng rng(14);
  Tensor x = randn({3, 10, 4}, rng);
  std::vector<Tensor> pieces = ops::split(x, {4, 0, 6}, 1);
  ASSERT_EQ(pieces[1].shape(), (Shape{3, 0, 4}));
  EXPECT_EQ(ops::concat(pieces, 1).to_vector(), x.to_vector());
}

TEST(Layout, RejectsBadArguments) {
  Tensor x = Tensor::zeros({2, 3, 4});
  EXPECT_THROW(ops::permute(x, {0, 1}), std::invalid_argument);
  EXPECT_THROW(ops::permute(x, {0, 1, 1}), std::invalid_argument);
  EXPECT_THROW(ops::permute(Tensor::zeros({1, 1, 1, 1, 1, 1, 1}), {0, 1, 2, 3, 4, 5, 6}),
               std::invalid_argument);
  EXPECT_THROW(ops::split(x, {1, 1}, 1), std::invalid_argument);
  EXPECT_THROW(ops::split(x, {3}, 3), std::invalid_argument);
  EXPECT_THROW(ops::concat({x, Tensor::zeros({2, 4, 4})}, 0), std::invalid_argument);
  EXPECT_THROW(ops::concat({}, 0), std::invalid_argument);
}

TEST(Gradcheck, LayoutFunctions) {
  Rng rng(15);
  gradcheck("permute", [](auto& v) { return permute(v[0], {2, 0, 1}); }, {randn({2, 3, 4}, rng)});
  gradcheck("concat",
            [](auto& v) {
              return concat({v[0], v[1]}, 1);
            },
            {randn({2, 3, 2}, rng), randn({2, 1, 2}, rng)});
  // Pieces used unevenly (one twice, one not at all).
  gradcheck("split",
            [](auto& v) {
              auto p = split(v[0], {2, 1, 3}, 1);
              return concat({mul(p[0], p[0]), p[2]}, 1);
            },
            {randn({3, 6}, rng)});
}

}  // namespace
}  // namespace qkv::test
