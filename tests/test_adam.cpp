// adam_update against torch.optim.Adam / AdamW (float64) over five steps: the parameter and
// both moment estimates to 1e-5 (norm-wise relative).
#include <gtest/gtest.h>

#include "support/op_compare.h"

namespace qkv::test {
namespace {

void expect_steps_match_torch(const ops::AdamParams& base, float grad_scale, Rng& rng) {
  const int steps = 5;
  Tensor param = randn({7, 13}, rng), grads = randn({steps, 7, 13}, rng, 0.3f);
  nlohmann::json attrs{{"lr", base.lr},
                       {"beta1", base.beta1},
                       {"beta2", base.beta2},
                       {"eps", base.eps},
                       {"weight_decay", base.weight_decay},
                       {"grad_scale", grad_scale}};
  TensorMap want = torch_reference("adam", {{"param", param}, {"grads", grads}}, attrs);

  Tensor p = param.clone(), m = Tensor::zeros(param.shape()), v = Tensor::zeros(param.shape());
  for (int s = 0; s < steps; ++s) {
    ops::AdamParams hp = base;
    hp.step = s + 1;
    ops::adam_update(p, grads.slice_rows(s, s + 1).reshape(param.shape()), m, v, hp, grad_scale);
  }
  Tensor stacked = want["out"];  // [3, 7, 13]: param, m, v
  expect_close(p, stacked.slice_rows(0, 1).reshape(param.shape()), 1e-5, "param");
  expect_close(m, stacked.slice_rows(1, 2).reshape(param.shape()), 1e-5, "m");
  expect_close(v, stacked.slice_rows(2, 3).reshape(param.shape()), 1e-5, "v");
}

TEST(Adam, MatchesTorchAdamOverFiveSteps) {
  Rng rng(41);
  expect_steps_match_torch({}, 1.f, rng);
  expect_steps_match_torch({0.05f, 0.8f, 0.95f, 1e-6f, 0.f, 1}, 1.f, rng);
}

TEST(Adam, MatchesTorchAdamWWithDecoupledDecay) {
  Rng rng(42);
  expect_steps_match_torch({1e-2f, 0.9f, 0.98f, 1e-9f, 0.1f, 1}, 1.f, rng);
}

TEST(Adam, GradScaleMultipliesTheGradientFirst) {
  Rng rng(43);
  expect_steps_match_torch({1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f, 1}, 0.25f, rng);
}

TEST(Adam, RejectsMismatchedShapes) {
  Tensor p = Tensor::zeros({3}), g = Tensor::zeros({4}), m = Tensor::zeros({3});
  Tensor v = Tensor::zeros({3});
  EXPECT_THROW(ops::adam_update(p, g, m, v, {}), std::invalid_argument);
}

}  // namespace
}  // namespace qkv::test
