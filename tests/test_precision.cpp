// The precision option and the autocast scope where no GPU is needed: bf16 on the cpu is
// refused by name, the scope nests and restores, and the cpu ignores it (its products stay f32,
// bit for bit the same inside and outside a bf16 scope).
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace qkv
