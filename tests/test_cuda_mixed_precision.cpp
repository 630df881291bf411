// bf16 autocast on cuda (ops/precision.h) against f32 on the CPU. Inside an AutocastScope each
// matrix product rounds its operands to bf16 (8 significant bits: relative rounding error up
// to 2^-9) and accumulates in f32, so a product of random operands is off by about 1e-3
// norm-wise. Each product must be within 1e-2 of the CPU's f32 result AND further than 1e-6
// from it: f32 cuBLAS agrees with the CPU to about 1e-7, so an error above 1e-6 shows that bf16
// operands were really used. Attention with head dim 64 or 128 runs FlashAttention. Then a tiny
// Seq2Seq trains 3 Adam steps under bf16 on cuda with losses within 5e-3 of f32 on the CPU and
// first-step gradients within 0.25 of each tensor's norm, and the
// training loop skips a poisoned update (infinite gradient or loss) leaving the weights
// bit-identical. Skipped in builds without CUDA
// (fails in one with CUDA but no device).
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "autograd/functions.h"
#include "autograd/tape.h"
#include "nn/seq2seq.h"
#include "ops/ops.h"
#include "ops/precision.h"
#include "support/cuda_compare.h"
#include "support/tiny_training.h"
#include "train/loop.h"
#include "train/trainer.h"

namespace qkv::test {
namespace {

using ops::AutocastScope;
using ops::MatmulPrecision;

// ||got - want|| / ||want||, got from cuda, want from the CPU.
double relative_error(const Tensor& got, const Tensor& want) {
  std::vector<float> g = got.to_vector(), w = want.to_vector();
  double diff = 0, norm = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    diff += (double(g[i]) - w[i]) * (double(g[i]) - w[i]);
    norm += double(w[i]) * w[i];
  }
  return std::sqrt(diff) / std::sqrt(norm);
}

// Within bf16's error of the f32 result, and not as close as f32 would be.
::testing::AssertionResult bf16_close(const Tensor& got, const Tensor& want) {
  if (got.shape() != want.shape() || got.dtype() != DType::f32)
    return ::testing::AssertionFailure() << "shape " << shape_str(got.shape()) << " vs "
                                         << shape_str(want.shape()) << " (or not F32)";
  double err = relative_error(got, want);
  if (err <= 1e-2 && err > 1e-6) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "relative error " << err << " outside (1e-6, 1e-2] for " << shape_str(got.shape())
         << (err <= 1e-6 ? ": as close as f32, so bf16 was not used" : "");
}

TEST(CudaMixedPrecision, GemmAndMatmulUseBf16Operands) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(1);
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      const int64_t m = 37, n = 53, k = 29;  // odd sizes: no tensor-core-friendly alignment
      Tensor a = uniform(ta ? Shape{k, m} : Shape{m, k}, rng);
      Tensor b = uniform(tb ? Shape{n, k} : Shape{k, n}, rng);
      Tensor c = uniform({m, n}, rng), c_cuda = on_cuda(c);
      ops::gemm(a, ta, b, tb, c, 0.5f, 1.f);  // beta = 1: accumulates into f32
      {
        AutocastScope scope(MatmulPrecision::bf16);
        ops::gemm(on_cuda(a), ta, on_cuda(b), tb, c_cuda, 0.5f, 1.f);
      }
      EXPECT_TRUE(bf16_close(c_cuda, c)) << "gemm ta=" << ta << " tb=" << tb;
    }
  }
  Tensor a = uniform({3, 2, 17, 65}, rng), b = uniform({3, 2, 33, 65}, rng);  // batched, b^T
  Tensor want = ops::matmul(a, false, b, true), got;
  {
    AutocastScope scope(MatmulPrecision::bf16);
    got = ops::matmul(on_cuda(a), false, on_cuda(b), true);
  }
  EXPECT_TRUE(bf16_close(got, want)) << "batched matmul";
  // Outside the scope the same product is f32 again (bf16 would miss 1e-5 by far).
  EXPECT_TRUE(close_normwise(ops::matmul(on_cuda(a), false, on_cuda(b), true), want, 1e-5));
}

TEST(CudaMixedPrecision, LinearForwardAndBackward) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(2);
  for (int64_t rows : {1, 7, 130}) {
    const int64_t in = 45, out = 71;
    Tensor x = uniform({rows, 1, in}, rng), w = uniform({out, in}, rng), bias = uniform({out}, rng);
    Tensor dy = uniform({rows, 1, out}, rng);
    // Gradients start non-zero: backward accumulates (beta = 1) into the f32 gradients.
    Tensor dx = uniform({rows, 1, in}, rng, -0.1f, 0.1f), dw = uniform({out, in}, rng, -0.1f, 0.1f);
    Tensor db = uniform({out}, rng, -0.1f, 0.1f);
    Tensor dx_c = on_cuda(dx), dw_c = on_cuda(dw), db_c = on_cuda(db), y_c;
    Tensor y = ops::linear_forward(x, w, bias);
    ops::linear_backward(dy, x, w, dx, dw, db);
    {
      AutocastScope scope(MatmulPrecision::bf16);
      y_c = ops::linear_forward(on_cuda(x), on_cuda(w), on_cuda(bias));
      ops::linear_backward(on_cuda(dy), on_cuda(x), on_cuda(w), dx_c, dw_c, db_c);
    }
    EXPECT_TRUE(bf16_close(y_c, y)) << "linear forward, rows " << rows;
    EXPECT_TRUE(bf16_close(dx_c, dx)) << "dx, rows " << rows;
    EXPECT_TRUE(bf16_close(dw_c, dw)) << "dw, rows " << rows;
    EXPECT_TRUE(close_normwise(db_c, db, 1e-5)) << "dbias is an f32 sum, rows " << rows;
  }
}

// Attention: head dim 24 runs the naive kernel with bf16 products; 64 and 128 run
// FlashAttention on bf16 copies. Gradients start non-zero (f32, accumulated).
TEST(CudaMixedPrecision, Attention) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(3);
  for (int64_t d : {24, 64, 128}) {
    const int64_t b = 2, h = 2, lq = d == 24 ? 11 : 70, lk = d == 24 ? 19 : 45;
    Tensor q = uniform({b, h, lq, d}, rng), k = uniform({b, h, lk, d}, rng);
    Tensor v = uniform({b, h, lk, d}, rng), dout = uniform({b, h, lq, d}, rng);
    ops::AttentionMask mask{true, Tensor::from_vector(std::vector<int32_t>{int32_t(lk), 13}, {b})};
    ops::AttentionMask mask_c{true, on_cuda(mask.key_lengths)};
    const float scale = 1.f / std::sqrt(float(d));
    ops::AttentionSaved saved, saved_c;
    Tensor out = ops::attention_forward(q, k, v, mask, scale, &saved, ops::AttentionImpl::naive);
    Tensor dq = uniform(q.shape(), rng), dk = uniform(k.shape(), rng), dv = uniform(v.shape(), rng);
    Tensor dq_c = on_cuda(dq), dk_c = on_cuda(dk), dv_c = on_cuda(dv), out_c;
    ops::attention_backward(dout, q, k, v, out, mask, scale, saved, dq, dk, dv);
    Tensor qc = on_cuda(q), kc = on_cuda(k), vc = on_cuda(v);
    {
      AutocastScope scope(MatmulPrecision::bf16);
      out_c = ops::attention_forward(qc, kc, vc, mask_c, scale, &saved_c);
      ops::attention_backward(on_cuda(dout), qc, kc, vc, out_c, mask_c, scale, saved_c, dq_c, dk_c,
                              dv_c);
    }
    const bool flash = d != 24;
    EXPECT_EQ(saved_c.q16.defined(), flash) << "head dim " << d;
    EXPECT_EQ(saved_c.probs.defined(), !flash) << "head dim " << d;
    EXPECT_EQ(out_c.dtype(), DType::f32);
    EXPECT_TRUE(bf16_close(out_c, out)) << "attention output, head dim " << d;
    EXPECT_TRUE(bf16_close(dq_c, dq)) << "dq, head dim " << d;
    EXPECT_TRUE(bf16_close(dk_c, dk)) << "dk, head dim " << d;
    EXPECT_TRUE(bf16_close(dv_c, dv)) << "dv, head dim " << d;
  }
}

// bf16 on cuda against f32 on the CPU (the tolerances: support/tiny_training.h).
TEST(CudaMixedPrecision, TinySeq2SeqTrainsInBf16LikeF32OnTheCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  expect_bf16_steps_like_f32(Device::cuda);
}

// The training loop on cuda under bf16: an infinite gradient, then an infinite loss, skip their
// updates and leave every weight bit for bit; a finite update after them is applied.
TEST(CudaMixedPrecision, NonFiniteUpdateIsSkippedAndWeightsStayIdentical) {
  QKV_SKIP_WITHOUT_CUDA();
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("qkv_mixed_skip_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  nn::Seq2SeqConfig config = tiny_training_config();
  nn::Seq2Seq model(config);
  Rng init(8);
  model.init(init);
  model.to(Device::cuda);
  nn::ParamList params = model.params();
  train::LoopConfig lc;
  lc.device = "cuda", lc.precision = "bf16", lc.max_updates = 10, lc.warmup_steps = 1;
  lc.validate_loop();
  Rng data(9);
  data::Batch batch = tiny_training_batch(data, config.vocab_size).to(Device::cuda);
  int64_t updates = 0;
  {
    train::TrainLog log(dir.string());
    train::TrainingLoop loop(lc, dir.string(), params, log);
    nn::Context ctx = loop.context(config.dropout);
    auto forward_backward = [&] {
      AutocastScope scope(loop.precision());
      Tape tape;
      Var loss;
      {
        Recording rec(tape);
        loss = train::batch_loss(model, batch, 0.1f, ctx);
      }
      tape.backward(loss);
      return double(loss.value().item());
    };
    auto snapshot = [&] {
      std::vector<Tensor> w;
      for (const auto& [name, p] : params) w.push_back(p.value().to(Device::cpu));
      return w;
    };
    std::vector<Tensor> before = snapshot();

    double loss = forward_backward();
    Tensor& g = params[0].second.grad();  // poison one gradient with +inf
    Tensor ones = Tensor::empty(g.shape(), DType::f32, Device::cuda);
    ones.fill(1.f);
    ops::axpy(INFINITY, ones, g);
    loop.update(loss, batch.n_tgt_tokens, 3, {0, 1});
    forward_backward();
    loop.update(INFINITY, batch.n_tgt_tokens, 3, {0, 2});  // a loss that overflowed
    EXPECT_EQ(loop.progress().update, 0);
    std::vector<Tensor> after = snapshot();
    for (size_t i = 0; i < params.size(); ++i)
      EXPECT_TRUE(identical(after[i], before[i])) << params[i].first << " changed";

    loop.update(forward_backward(), batch.n_tgt_tokens, 3, {0, 3});
    updates = loop.progress().update;
    EXPECT_FALSE(identical(snapshot()[0], before[0])) << "a finite update must be applied";
  }
  EXPECT_EQ(updates, 1);
  std::ifstream metrics(dir / "metrics.jsonl");
  std::stringstream text;
  text << metrics.rdbuf();
  EXPECT_NE(text.str().find("update 1 skipped, weights and optimizer state unchanged: the "
                            "gradient norm is not finite"),
            std::string::npos)
      << text.str();
  EXPECT_NE(text.str().find("the loss is not finite"), std::string::npos) << text.str();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace qkv::test
