// The precision option and the autocast scope where no GPU is needed: bf16 on the cpu is
// refused by name, the scope nests and restores, and the cpu ignores it (its products stay f32,
// bit for bit the same inside and outside a bf16 scope). And the training loop's guard that
// bf16 leans on: a non-finite gradient or loss skips the update, leaves the weights as they were
// and says so in metrics.jsonl.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "ops/ops.h"
#include "ops/precision.h"
#include "train/loop.h"

namespace qkv {
namespace {

using ops::AutocastScope;
using ops::MatmulPrecision;

TEST(Precision, Bf16OnTheCpuIsRefusedNamingBothKeys) {
  train::LoopConfig c;
  c.device = "cpu", c.precision = "bf16";
  try {
    c.validate_loop();
    FAIL() << "precision bf16 with device cpu was accepted";
  } catch (const std::invalid_argument& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("precision: bf16"), std::string::npos) << what;
    EXPECT_NE(what.find("device: cuda"), std::string::npos) << what;
    EXPECT_NE(what.find("device is cpu"), std::string::npos) << what;
  }
  c.precision = "f16";
  EXPECT_THROW(c.validate_loop(), std::invalid_argument);
  c.precision = "f32";
  EXPECT_NO_THROW(c.validate_loop());
  c.device = "cuda", c.precision = "bf16";
  EXPECT_NO_THROW(c.validate_loop());
}

TEST(Precision, NamesAndNestedScopes) {
  EXPECT_EQ(ops::precision_from_name("bf16"), MatmulPrecision::bf16);
  EXPECT_STREQ(ops::precision_name(MatmulPrecision::f32), "f32");
  EXPECT_THROW(ops::precision_from_name("fp8"), std::invalid_argument);
  EXPECT_EQ(ops::matmul_precision(), MatmulPrecision::f32);
  {
    AutocastScope outer(MatmulPrecision::bf16);
    EXPECT_EQ(ops::matmul_precision(), MatmulPrecision::bf16);
    {
      AutocastScope inner(MatmulPrecision::f32);
      EXPECT_EQ(ops::matmul_precision(), MatmulPrecision::f32);
    }
    EXPECT_EQ(ops::matmul_precision(), MatmulPrecision::bf16);
  }
  EXPECT_EQ(ops::matmul_precision(), MatmulPrecision::f32);
}

TEST(Precision, TheCpuIgnoresTheScope) {
  Rng rng(1);
  Tensor x = Tensor::empty({70, 33}), w = Tensor::empty({19, 33}), b = Tensor::empty({19});
  rng.uniform(x, -2.f, 2.f);
  rng.uniform(w, -2.f, 2.f);
  rng.uniform(b, -2.f, 2.f);
  Tensor f32 = ops::linear_forward(x, w, b), autocast;
  {
    AutocastScope scope(MatmulPrecision::bf16);
    autocast = ops::linear_forward(x, w, b);
  }
  EXPECT_EQ(autocast.to_vector(), f32.to_vector());
}

TEST(Precision, NonFiniteUpdateIsSkippedAndLogged) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("qkv_precision_skip_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  Var w(Tensor::from_vector(std::vector<float>{1.f, -2.f, 3.f}, {3}), true);
  nn::ParamList params = {{"w", w}};
  train::LoopConfig lc;
  lc.max_updates = 10, lc.warmup_steps = 1;
  {
    train::TrainLog log(dir.string());
    train::TrainingLoop loop(lc, dir.string(), params, log);
    w.grad().fill(INFINITY);  // an overflowed gradient
    loop.update(1.0, 1, 1, {0, 1});
    w.grad().fill(0.5f);
    loop.update(NAN, 1, 1, {0, 2});  // an overflowed loss
    EXPECT_EQ(loop.progress().update, 0);
    EXPECT_EQ(w.value().to_vector(), (std::vector<float>{1.f, -2.f, 3.f}));
    w.grad().fill(0.5f);
    loop.update(1.0, 1, 1, {0, 3});
    EXPECT_EQ(loop.progress().update, 1);
    EXPECT_NE(w.value().to_vector(), (std::vector<float>{1.f, -2.f, 3.f}));
  }
  std::stringstream text;
  text << std::ifstream(dir / "metrics.jsonl").rdbuf();
  EXPECT_NE(text.str().find("update 1 skipped, weights and optimizer state unchanged: the "
                            "gradient norm is not finite"),
            std::string::npos)
      << text.str();
  EXPECT_NE(text.str().find("the loss is not finite (loss nan"), std::string::npos) << text.str();
  EXPECT_NE(text.str().find("2 skipped in this run"), std::string::npos) << text.str();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace qkv
