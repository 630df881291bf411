// The moving average of the weights (optim/weight_average.h) against PyTorch's AveragedModel with
// the same decay, over updates before and after the decay reaches its cap; tied weights averaged
// once; the swap into the parameters and back; a saved average's loading and its errors.
#include <gtest/gtest.h>

#include <cstring>

#include "optim/weight_average.h"
#include "support/torch_ref.h"
#include "support/training_checks.h"

namespace qkv::test {
namespace {

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST(WeightAverage, MatchesTorchAveragedModel) {
  // With decay 0.85, min(0.85, (1 + t) / (10 + t)) follows the warm-up up to t = 50, then the cap.
  const int updates = 60;
  const double decay = 0.85;
  Rng rng(7);
  Tensor weights = randn({updates + 1, 6, 5}, rng);  // the start, then after each update
  Var w(weights.slice_rows(0, 1).reshape({6, 5}).clone(), true);
  optim::WeightAverage average({{"w", w}}, decay);
  for (int t = 1; t <= updates; ++t) {
    w.mutable_value().copy_from(weights.slice_rows(t, t + 1).reshape({6, 5}));
    average.update(t);
  }
  TensorMap want = torch_reference("weight_average", {{"weights", weights}}, {{"decay", decay}});
  ASSERT_EQ(average.weights().size(), 1u);
  expect_close(average.weights()[0].second, want["out"], 1e-5, "average");
}

TEST(WeightAverage, DecayWarmsUpToItsCap) {
  EXPECT_DOUBLE_EQ(optim::average_decay(0.999, 1), 2.0 / 11.0);
  EXPECT_DOUBLE_EQ(optim::average_decay(0.999, 1000), 1001.0 / 1010.0);
  EXPECT_DOUBLE_EQ(optim::average_decay(0.9, 1000), 0.9);
}

TEST(WeightAverage, TiedWeightsAreAveragedOnce) {
  Rng rng(8);
  Var shared(randn({4, 3}, rng), true), alone(shared.value().clone(), true);
  optim::WeightAverage tied({{"a", shared}, {"b", shared}}, 0.5), single({{"a", alone}}, 0.5);
  Tensor next = randn({4, 3}, rng);
  shared.mutable_value().copy_from(next), alone.mutable_value().copy_from(next);
  tied.update(1), single.update(1);
  ASSERT_EQ(tied.weights().size(), 1u);
  EXPECT_EQ(tied.weights()[0].first, "a");
  EXPECT_TRUE(same_bits(tied.weights()[0].second, single.weights()[0].second));
}

TEST(WeightAverage, SwapLendsTheAverageAndGivesTheWeightsBack) {
  Rng rng(9);
  Var w(randn({5, 2}, rng), true);
  optim::WeightAverage average({{"w", w}}, 0.9);
  w.mutable_value().copy_from(randn({5, 2}, rng));
  average.update(1);
  Tensor trained = w.value().clone();
  {
    optim::WeightAverage::Swap swap(&average);
    EXPECT_TRUE(same_bits(w.value(), average.weights()[0].second));
  }
  EXPECT_TRUE(same_bits(w.value(), trained));
  { optim::WeightAverage::Swap none(nullptr); }
  EXPECT_TRUE(same_bits(w.value(), trained));
}

TEST(WeightAverage, LoadsASavedAverageAndNamesWhatIsWrong) {
  Rng rng(10);
  Var w(randn({3, 3}, rng), true);
  optim::WeightAverage average({{"enc.w", w}}, 0.9);
  Tensor saved = randn({3, 3}, rng);
  average.load({{"enc.w", saved}}, "ckpt");
  EXPECT_TRUE(same_bits(average.weights()[0].second, saved));
  std::string missing = error_of([&] { average.load({{"dec.w", saved}}, "ckpt"); });
  EXPECT_NE(missing.find("ckpt: missing tensor 'enc.w'"), std::string::npos) << missing;
  std::string shape = error_of([&] { average.load({{"enc.w", randn({3, 2}, rng)}}, "ckpt"); });
  EXPECT_NE(shape.find("ckpt: tensor 'enc.w' is F32 [3, 2]"), std::string::npos) << shape;
  EXPECT_THROW(optim::WeightAverage({{"enc.w", w}}, 1.0), std::invalid_argument);
  EXPECT_THROW(optim::WeightAverage({{"enc.w", w}}, 0.0), std::invalid_argument);
}

}  // namespace
}  // namespace qkv::test
