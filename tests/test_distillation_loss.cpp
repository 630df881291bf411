// Knowledge distillation's KL term against PyTorch (float64 F.kl_div on log-softmaxes at a
// temperature, times T^2): the summed value and the student's gradient to 1e-5 (norm-wise
// relative), with ignored rows, several temperatures and vocabularies; and the combined loss
// of the trainers (train/distillation.h) as its two terms weighed.
#include <gtest/gtest.h>

#include "support/gradcheck.h"
#include "support/op_compare.h"
#include "train/distillation.h"

namespace qkv::test {
namespace {

Tensor targets_with_ignored(int64_t n, int32_t vocab, int ignore_index, Rng& rng) {
  Tensor t = rand_ids({n}, vocab, rng);
  for (int64_t i = 1; i < n; i += 4) t.data<int32_t>()[i] = ignore_index;
  return t;
}

TEST(DistillationKl, SumAndGradientMatchTorch) {
  Rng rng(41);
  for (int64_t vocab : {1000, 10, 1})
    for (float temperature : {1.f, 2.f, 4.5f}) {
      SCOPED_TRACE("V=" + std::to_string(vocab) + " T=" + std::to_string(temperature));
      int64_t n = 17;
      Tensor teacher = randn({n, vocab}, rng, 3.f);
      Tensor targets = targets_with_ignored(n, int32_t(vocab), -1, rng);
      compare_with_torch(
          "distillation_kl_sum",
          {{"logits", randn({n, vocab}, rng, 3.f)}, {"teacher", teacher}, {"targets", targets}},
          {{"ignore_index", -1}, {"temperature", temperature}},
          [&](auto& v) {
            return distillation_kl_sum(v["logits"], teacher, targets, -1, temperature);
          },
          1e-5, 1e-5, rng);
    }
}

TEST(DistillationKl, IsZeroForTheTeachersOwnLogitsAndFiniteForLargeOnes) {
  Rng rng(42);
  Tensor teacher = randn({6, 50}, rng, 500.f);
  Tensor targets = rand_ids({6}, 50, rng);
  EXPECT_NEAR(distillation_kl_sum(Var(teacher), teacher, targets, -1, 2.f).value().item(), 0.f,
              1e-3);
  Tensor far = ops::scale(teacher, -1.f);
  EXPECT_TRUE(
      std::isfinite(distillation_kl_sum(Var(far), teacher, targets, -1, 1.f).value().item()));
}

TEST(DistillationKl, RefusesATeacherOfAnotherShape) {
  Tensor targets = Tensor::from_vector(std::vector<int32_t>{0, 1}, {2});
  EXPECT_THROW(
      distillation_kl_sum(Var(Tensor::zeros({2, 5})), Tensor::zeros({2, 6}), targets, -1, 1.f),
      std::invalid_argument);
}

TEST(Gradcheck, DistillationKlSum) {
  Rng rng(43);
  Tensor teacher = randn({4, 5}, rng, 2.f);
  Tensor targets = Tensor::from_vector(std::vector<int32_t>{2, -1, 0, 4}, {4});
  gradcheck("distillation_kl_sum",
            [&](auto& v) { return distillation_kl_sum(v[0], teacher, targets, -1, 2.f); },
            {randn({4, 5}, rng)});
}

TEST(DistillationLoss, WeighsTheKlTermAgainstTheLabelSmoothedCrossEntropy) {
  Rng rng(44);
  Var logits(randn({9, 30}, rng, 2.f));
  Tensor teacher = randn({9, 30}, rng, 2.f);
  Tensor targets = targets_with_ignored(9, 30, -1, rng);
  float kl = distillation_kl_sum(logits, teacher, targets, -1, 3.f).value().item();
  float ce = cross_entropy_sum(logits, targets, -1, 0.1f).value().item();
  train::DistillationWeights w{3.f, 0.25f};
  EXPECT_NEAR(train::distillation_loss(logits, teacher, targets, -1, 0.1f, w).value().item(),
              0.25f * kl + 0.75f * ce, 1e-4 * std::abs(kl + ce));
  w.kd_weight = 1.f;  // the teacher alone
  EXPECT_NEAR(train::distillation_loss(logits, teacher, targets, -1, 0.1f, w).value().item(), kl,
              1e-4 * kl);
}

}  // namespace
}  // namespace qkv::test
