// The precision option and the autocast scope where no GPU is needed: bf16 is accepted on both
// devices, the scope nests and restores, and on the cpu the products inside it take bf16
// operands (the linear layer forward and backward equal cpu::gemm_bf16 on the same operands, and
// differ from f32), so a tiny Seq2Seq trains under it as in f32. And the training loop's guard
// that bf16 leans on: a non-finite gradient or loss skips the update, leaves the weights as they
// were and says so in metrics.jsonl. ctest runs it again on the fallback (QKV_CPU_ISA=portable).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "ops/cpu/low_precision.h"
#include "ops/ops.h"
#include "ops/precision.h"
#include "support/tiny_training.h"
#include "train/loop.h"

namespace qkv {
namespace {

using ops::AutocastScope;
using ops::MatmulPrecision;

TEST(Precision, Bf16AndAutoOnEitherDeviceOtherPrecisionsRefused) {
  train::LoopConfig c;
  for (const char* device : {"cpu", "cuda"}) {
    c.device = device;
    for (const char* precision : {"f32", "bf16", "auto"}) {
      c.precision = precision;
      EXPECT_NO_THROW(c.validate_loop()) << device << " " << precision;
    }
    // auto: bf16 where its products are fast.
    bool fast = c.device == "cuda" || ops::cpu_has_bf16_products();
    EXPECT_EQ(c.matmul_precision(), fast ? MatmulPrecision::bf16 : MatmulPrecision::f32) << device;
    c.precision = "f16";
    try {
      c.validate_loop();
      FAIL() << "precision f16 was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("'f16'"), std::string::npos) << e.what();
    }
  }
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

// y = x w^T + b, dx = dy w and dw = dy^T x inside a bf16 scope against gemm_bf16 on the same
// operands (the same kernel, so equal up to the order of the bias add: 1e-6), and further than
// f32's rounding from the f32 results.
TEST(Precision, TheCpuMultipliesInBf16InsideTheScope) {
  Rng rng(1);
  const int64_t rows = 70, in = 33, out = 19;
  Tensor x = Tensor::empty({rows, in}), w = Tensor::empty({out, in}), b = Tensor::empty({out});
  Tensor dy = Tensor::empty({rows, out});
  for (Tensor* t : {&x, &w, &b, &dy}) rng.uniform(*t, -2.f, 2.f);
  auto bf16_product = [](const Tensor& a, bool ta, const Tensor& c, bool tc, int64_t m, int64_t n) {
    Tensor y = Tensor::zeros({m, n});
    int64_t k = ta ? a.size(0) : a.size(1);
    ops::cpu::gemm_bf16(ta, tc, m, n, k, 1.f, a.data<float>(), a.size(1), c.data<float>(),
                        c.size(1), 0.f, y.data<float>(), n, ops::cpu::cpu_isa());
    return y;
  };
  Tensor y_f32 = ops::linear_forward(x, w, b), dx_f32 = Tensor::zeros({rows, in}),
         dw_f32 = Tensor::zeros({out, in}), db;
  ops::linear_backward(dy, x, w, dx_f32, dw_f32, db);
  Tensor y, dx = Tensor::zeros({rows, in}), dw = Tensor::zeros({out, in});
  {
    AutocastScope scope(MatmulPrecision::bf16);
    y = ops::linear_forward(x, w, b);
    ops::linear_backward(dy, x, w, dx, dw, db);
  }
  Tensor y_want = bf16_product(x, false, w, true, rows, out);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < out; ++c) y_want.data<float>()[r * out + c] += b.data<float>()[c];
  struct Check {
    const char* name;
    Tensor got, want, f32;
  };
  for (const Check& check : {Check{"y", y, y_want, y_f32},
                             Check{"dx", dx, bf16_product(dy, false, w, false, rows, in), dx_f32},
                             Check{"dw", dw, bf16_product(dy, true, x, false, out, in), dw_f32}}) {
    std::vector<float> got = check.got.to_vector(), want = check.want.to_vector(),
                       f32 = check.f32.to_vector();
    double off_f32 = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_NEAR(got[i], want[i], 1e-6 * (1 + std::fabs(want[i]))) << check.name << " at " << i;
      off_f32 = std::max(off_f32, double(std::fabs(got[i] - f32[i])));
    }
    EXPECT_GT(off_f32, 1e-3) << check.name << ": as close to f32 as f32 itself";
  }
}

// A tiny Seq2Seq, 3 Adam steps in f32 and under bf16 on the CPU, within the tolerances of
// support/tiny_training.h.
TEST(Precision, TinySeq2SeqTrainsInBf16OnTheCpuLikeF32) {
  test::expect_bf16_steps_like_f32(Device::cpu);
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

// bf16 on a CPU without AVX512_BF16 (or capped below it by QKV_CPU_ISA, as ctest's
// test_precision .portable run does) is right but slower than f32: the run says so once. auto
// picks bf16 only with it, and says which.
TEST(Precision, Bf16WithoutAvx512Bf16IsNotedAutoPicksByTheCpu) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("qkv_precision_note_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  Var w(Tensor::from_vector(std::vector<float>{1.f}, {1}), true);
  nn::ParamList params = {{"w", w}};
  bool fast = ops::cpu_has_bf16_products();
  for (const char* precision : {"f32", "bf16", "auto"}) {
    train::LoopConfig lc;
    lc.precision = precision;
    {
      train::TrainLog log(dir.string());
      train::TrainingLoop loop(lc, dir.string(), params, log);
      EXPECT_EQ(loop.precision(), lc.precision == "f32" || (lc.precision == "auto" && !fast)
                                      ? MatmulPrecision::f32
                                      : MatmulPrecision::bf16);
    }
    std::stringstream text;
    text << std::ifstream(dir / "metrics.jsonl").rdbuf();
    bool slow_noted = text.str().find("slower than precision: f32") != std::string::npos;
    EXPECT_EQ(slow_noted, lc.precision == "bf16" && !fast)
        << precision << ", CPU ISA " << ops::cpu::isa_name(ops::cpu::cpu_isa()) << ": "
        << text.str();
    std::string auto_note = fast ? "precision auto: bf16 (this CPU has AVX512_BF16)"
                                 : "precision auto: f32 (this CPU has no AVX512_BF16)";
    EXPECT_EQ(text.str().find(auto_note) != std::string::npos, lc.precision == "auto")
        << precision << ": " << text.str();
    fs::remove(dir / "metrics.jsonl");
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace qkv
