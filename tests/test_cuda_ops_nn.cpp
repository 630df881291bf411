// CUDA kernels against the CPU kernels, through ops/ops.h: embedding, LayerNorm, RMSNorm, rotary
// position embeddings, softmax, log-softmax, activations, dropout, cross-entropy and Adam.
// Tolerance unless a test says otherwise: elementwise |cuda - cpu| <= 1e-5 * (|cpu| + 1). Dropout
// masks: bit for bit. Gradients start random (backward kernels accumulate). Skipped in builds
// without CUDA (fails in one with CUDA but no device).
#include <algorithm>
#include <cmath>

#include "ops/ops.h"
#include "support/cuda_compare.h"

namespace qkv::test {
namespace {

// Shapes of [rows, width] inputs: rows 1, 7, 33, 1000+; widths 1, 3, 65, 511, 1024+.
const std::vector<Shape> kRowShapes = {{1, 1},    {7, 3},     {33, 65},  {1001, 511},
                                       {3, 1025}, {2, 5, 33}, {1, 4099}, {1000, 1}};

TEST(CudaEmbedding, ForwardAndDeterministicBackwardMatchCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(10);
  // {ids shape, vocab, dim}: small vocabularies repeat ids many times.
  std::vector<std::tuple<Shape, int, int64_t>> cases = {{{1}, 1, 1},         {{3, 7}, 11, 33},
                                                        {{5}, 3, 16},        {{2, 3, 4}, 50, 7},
                                                        {{64, 96}, 40, 513}, {{1000}, 8000, 65}};
  for (auto& [ids_shape, vocab, dim] : cases)
    for (float s : {1.f, 2.5f}) {
      Tensor ids = random_ids(ids_shape, rng, 0, vocab), table = uniform({vocab, dim}, rng);
      Tensor y = ops::embedding_forward(ids, table, s);
      EXPECT_TRUE(close_elementwise(ops::embedding_forward(on_cuda(ids), on_cuda(table), s), y))
          << shape_str(ids_shape) << " vocab " << vocab;
      Tensor dy = uniform(y.shape(), rng), dtable = uniform(table.shape(), rng);
      Tensor dtable_c = on_cuda(dtable), again = on_cuda(dtable);
      ops::embedding_backward(dy, ids, dtable, s);
      ops::embedding_backward(on_cuda(dy), on_cuda(ids), dtable_c, s);
      ops::embedding_backward(on_cuda(dy), on_cuda(ids), again, s);
      EXPECT_TRUE(identical(again, dtable_c)) << "not deterministic " << shape_str(ids_shape);
      // The same order of additions per element as the CPU, but FMA contraction differs (nvcc
      // contracts, the CPU's vector loop may not): an element's difference is in units of its
      // partial sums, which can be far larger than the element; hence norm-wise.
      EXPECT_TRUE(close_normwise(dtable_c, dtable, 1e-6)) << shape_str(ids_shape);
    }
}

TEST(CudaEmbedding, BadIdIsAClearError) {
  QKV_SKIP_WITHOUT_CUDA();
  Tensor table = on_cuda(Tensor::full({5, 3}, 1.f));
  Tensor ids = on_cuda(Tensor::from_vector(std::vector<int32_t>{0, 4, 5, 1}, {4}));
  try {
    ops::embedding_forward(ids, table);
    FAIL() << "no error for id 5 of a vocabulary of 5";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("id 5 at position 2"), std::string::npos) << e.what();
  }
  Tensor dtable = on_cuda(Tensor::zeros({5, 3}));
  EXPECT_THROW(ops::embedding_backward(on_cuda(Tensor::zeros({4, 3})), ids, dtable),
               std::invalid_argument);
}

TEST(CudaLayerNorm, ForwardSavedStatsAndBackwardMatchCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(11);
  for (const Shape& shape : kRowShapes)
    for (float offset : {0.f, 50.f}) {  // a large mean tests the two-pass variance
      Tensor x = uniform(shape, rng, offset - 2.f, offset + 2.f);
      int64_t d = shape.back();
      Tensor gamma = uniform({d}, rng, 0.5f, 1.5f), beta = uniform({d}, rng);
      Tensor mean, rstd, mean_c, rstd_c;
      Tensor y = ops::layer_norm_forward(x, gamma, beta, 1e-5f, mean, rstd);
      Tensor y_c =
          ops::layer_norm_forward(on_cuda(x), on_cuda(gamma), on_cuda(beta), 1e-5f, mean_c, rstd_c);
      // With a mean of 50 the float sums of the mean (rounded differently on each device) lose
      // digits in x - mean: 1e-3 there, 1e-5 otherwise.
      double tol = offset == 0.f ? 1e-5 : 1e-3;
      EXPECT_TRUE(close_elementwise(y_c, y, tol)) << shape_str(shape) << " offset " << offset;
      EXPECT_TRUE(close_elementwise(mean_c, mean)) << shape_str(shape);
      EXPECT_TRUE(close_elementwise(rstd_c, rstd, tol)) << shape_str(shape);
      Tensor dy = uniform(shape, rng), dx = uniform(shape, rng);
      Tensor dgamma = uniform({d}, rng), dbeta = uniform({d}, rng);
      Tensor dx_c = on_cuda(dx), dgamma_c = on_cuda(dgamma), dbeta_c = on_cuda(dbeta);
      ops::layer_norm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta);
      // The CPU's saved statistics, so that only the backward kernel is compared.
      ops::layer_norm_backward(on_cuda(dy), on_cuda(x), on_cuda(gamma), on_cuda(mean),
                               on_cuda(rstd), dx_c, dgamma_c, dbeta_c);
      // dx is rstd times a difference of terms of order |gamma dy|, whose roundings (a fused
      // multiply-add or not) rstd scales too: 316 for rows of one element (eps 1e-5).
      std::vector<float> rstds = rstd.to_vector();
      double rstd_max = *std::max_element(rstds.begin(), rstds.end());
      EXPECT_TRUE(close_elementwise(dx_c, dx, 1e-5 * std::max(1.0, rstd_max)))
          << "dx " << shape_str(shape);
      EXPECT_TRUE(close_normwise(dgamma_c, dgamma)) << "dgamma " << shape_str(shape);
      EXPECT_TRUE(close_normwise(dbeta_c, dbeta)) << "dbeta " << shape_str(shape);
      // Only some gradients wanted.
      Tensor none, dbeta_only = on_cuda(dbeta), dbeta_cpu = dbeta.clone();
      ops::layer_norm_backward(dy, x, gamma, mean, rstd, none, none, dbeta_cpu);
      ops::layer_norm_backward(on_cuda(dy), on_cuda(x), on_cuda(gamma), on_cuda(mean),
                               on_cuda(rstd), none, none, dbeta_only);
      EXPECT_TRUE(close_normwise(dbeta_only, dbeta_cpu)) << "dbeta alone " << shape_str(shape);
    }
}

TEST(CudaRmsNorm, ForwardSavedStatsAndBackwardMatchCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(17);
  for (const Shape& shape : kRowShapes)
    for (float eps : {1e-6f, 0.1f}) {
      Tensor x = uniform(shape, rng, -3.f, 3.f);
      int64_t d = shape.back();
      Tensor gamma = uniform({d}, rng, 0.5f, 1.5f), rstd, rstd_c;
      Tensor y = ops::rms_norm_forward(x, gamma, eps, rstd);
      Tensor y_c = ops::rms_norm_forward(on_cuda(x), on_cuda(gamma), eps, rstd_c);
      EXPECT_TRUE(close_elementwise(y_c, y)) << shape_str(shape) << " eps " << eps;
      EXPECT_TRUE(close_elementwise(rstd_c, rstd)) << shape_str(shape) << " eps " << eps;
      Tensor dy = uniform(shape, rng), dx = uniform(shape, rng), dgamma = uniform({d}, rng);
      Tensor dx_c = on_cuda(dx), dgamma_c = on_cuda(dgamma);
      ops::rms_norm_backward(dy, x, gamma, rstd, dx, dgamma);
      // The CPU's saved statistics, so that only the backward kernel is compared.
      ops::rms_norm_backward(on_cuda(dy), on_cuda(x), on_cuda(gamma), on_cuda(rstd), dx_c,
                             dgamma_c);
      EXPECT_TRUE(close_elementwise(dx_c, dx)) << "dx " << shape_str(shape);
      EXPECT_TRUE(close_normwise(dgamma_c, dgamma)) << "dgamma " << shape_str(shape);
      // dgamma alone (no dx), twice from the same start: the same bits, and the CPU's sums.
      Tensor none, dgamma_cpu = dgamma.clone();
      Tensor dgamma_once = on_cuda(dgamma), dgamma_twice = on_cuda(dgamma);
      ops::rms_norm_backward(dy, x, gamma, rstd, none, dgamma_cpu);
      for (Tensor* dg : {&dgamma_once, &dgamma_twice})
        ops::rms_norm_backward(on_cuda(dy), on_cuda(x), on_cuda(gamma), on_cuda(rstd), none, *dg);
      EXPECT_TRUE(identical(dgamma_once, dgamma_twice)) << "not deterministic " << shape_str(shape);
      EXPECT_TRUE(close_normwise(dgamma_once, dgamma_cpu)) << "dgamma alone " << shape_str(shape);
    }
  Tensor rstd;
  EXPECT_THROW(ops::rms_norm_forward(on_cuda(Tensor::zeros({2, 4})), on_cuda(Tensor::zeros({3})),
                                     1e-6f, rstd),
               std::invalid_argument);
}

TEST(CudaRope, ForwardAndBackwardMatchCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(18);
  // {B, H, L, D}: D = 2, D / 2 odd, decoding steps (L = 1), and Llama's head dim 128.
  const std::vector<Shape> shapes = {{1, 1, 1, 2}, {2, 3, 5, 6}, {3, 4, 1, 64}, {2, 8, 70, 128}};
  for (const Shape& shape : shapes)
    for (const ops::RopeFrequencies& freq :
         {ops::RopeFrequencies{.theta = 10000.0}, ops::RopeFrequencies{.theta = 500000.0},
          ops::RopeFrequencies{.theta = 500000.0,
          .scaling = ops::RopeScaling::llama3,
          .factor = 8,
          .original_positions = 8192},
          ops::RopeFrequencies{.theta = 10000.0, .scaling = ops::RopeScaling::linear, .factor = 4}})
      for (int high : {1000, 1 << 17}) {
        // Positions differ per row, in no order; an angle near 2^17 radians tests the double
        // angle (in float it would be off by about 1e-2).
        Tensor positions = random_ids({shape[0], shape[2]}, rng, 0, high);
        Tensor x = uniform(shape, rng);
        Tensor y = ops::rope_forward(x, positions, freq);
        Tensor y_c = ops::rope_forward(on_cuda(x), on_cuda(positions), freq);
        EXPECT_TRUE(close_elementwise(y_c, y))
            << shape_str(shape) << " theta " << freq.theta << " scaling " << int(freq.scaling);
        Tensor dy = uniform(shape, rng), dx = uniform(shape, rng), dx_c = on_cuda(dx);
        ops::rope_backward(dy, positions, freq, dx);
        ops::rope_backward(on_cuda(dy), on_cuda(positions), freq, dx_c);
        EXPECT_TRUE(close_elementwise(dx_c, dx)) << "dx " << shape_str(shape);
      }
  // Positions must be on x's device.
  Tensor positions = Tensor::zeros({1, 3}, DType::i32);
  try {
    ops::rope_forward(on_cuda(Tensor::zeros({1, 2, 3, 4})), positions, {1e4});
    FAIL() << "positions on the cpu accepted for x on cuda";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("positions must be on x's device (cuda), got cpu"),
              std::string::npos)
        << e.what();
  }
}

TEST(CudaSoftmax, ForwardBackwardAndLogSoftmaxMatchCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(12);
  for (const Shape& shape : kRowShapes)
    for (float spread : {1.f, 30.f}) {  // 30: nearly one-hot rows
      Tensor x = uniform(shape, rng, -spread, spread);
      Tensor y = ops::softmax_forward(x);
      EXPECT_TRUE(close_elementwise(ops::softmax_forward(on_cuda(x)), y)) << shape_str(shape);
      EXPECT_TRUE(
          close_elementwise(ops::log_softmax_forward(on_cuda(x)), ops::log_softmax_forward(x)))
          << shape_str(shape);
      Tensor dy = uniform(shape, rng), dx = uniform(shape, rng), dx_c = on_cuda(dx);
      ops::softmax_backward(dy, y, dx);
      ops::softmax_backward(on_cuda(dy), on_cuda(y), dx_c);
      EXPECT_TRUE(close_elementwise(dx_c, dx)) << shape_str(shape) << " spread " << spread;
    }
  // Rows of only -inf (nothing allowed) give zeros, and no gradient.
  Tensor masked = Tensor::full({3, 65}, -INFINITY);
  EXPECT_TRUE(identical(ops::softmax_forward(on_cuda(masked)), Tensor::zeros({3, 65})));
  EXPECT_TRUE(identical(ops::log_softmax_forward(on_cuda(masked)), Tensor::zeros({3, 65})));
}

TEST(CudaActivation, EveryActivationForwardAndBackwardMatchCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(13);
  for (ops::Activation act : {ops::Activation::relu, ops::Activation::gelu,
                              ops::Activation::gelu_tanh, ops::Activation::silu})
    for (const Shape& shape : kRowShapes) {
      Tensor x = uniform(shape, rng, -8.f, 8.f);
      EXPECT_TRUE(close_elementwise(ops::activation_forward(act, on_cuda(x)),
                                    ops::activation_forward(act, x)))
          << int(act) << " " << shape_str(shape);
      Tensor dy = uniform(shape, rng), dx = uniform(shape, rng), dx_c = on_cuda(dx);
      ops::activation_backward(act, dy, x, dx);
      ops::activation_backward(act, on_cuda(dy), on_cuda(x), dx_c);
      EXPECT_TRUE(close_elementwise(dx_c, dx)) << int(act) << " " << shape_str(shape);
    }
}

TEST(CudaDropout, MaskIsBitIdenticalToCpuAndBackwardMatches) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng data(14);
  for (int64_t n : {int64_t(1), int64_t(3), int64_t(5), int64_t(1000), int64_t(100003)})
    for (float p : {0.f, 0.1f, 0.5f, 0.9f}) {
      Tensor x = uniform({n}, data);
      // Two generators in the same state, one offset already advanced (odd counter blocks).
      Rng cpu_rng(77, 3), cuda_rng(77, 3);
      Tensor mask, mask_c;
      Tensor y = ops::dropout_forward(x, p, cpu_rng, mask);
      Tensor y_c = ops::dropout_forward(on_cuda(x), p, cuda_rng, mask_c);
      EXPECT_EQ(cuda_rng.offset(), cpu_rng.offset());
      EXPECT_TRUE(identical(mask_c, mask)) << "n " << n << " p " << p;
      EXPECT_TRUE(close_elementwise(y_c, y)) << "n " << n << " p " << p;
      Tensor dy = uniform({n}, data), dx = uniform({n}, data), dx_c = on_cuda(dx);
      ops::dropout_backward(dy, mask, p, dx);
      ops::dropout_backward(on_cuda(dy), mask_c, p, dx_c);
      EXPECT_TRUE(close_elementwise(dx_c, dx)) << "n " << n << " p " << p;
    }
}

TEST(CudaCrossEntropy, SmoothingAndIgnoredRowsMatchCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(15);
  // {rows, vocab}
  std::vector<std::pair<int64_t, int64_t>> cases = {{1, 1},      {7, 3},    {33, 65},
                                                    {1000, 511}, {5, 8003}, {2, 1025}};
  for (auto [n, vocab] : cases)
    for (float smoothing : {0.f, 0.1f, 1.f}) {
      Tensor logits = uniform({n, vocab}, rng, -10.f, 10.f);
      Tensor targets = random_ids({n}, rng, 0, int(vocab));
      // Every third row ignored (and always row 0 when there are several).
      std::vector<int32_t> t(targets.data<int32_t>(), targets.data<int32_t>() + n);
      for (int64_t i = 0; i < n && n > 1; i += 3) t[i] = -100;
      targets = Tensor::from_vector(t, {n});
      Tensor lse, lse_c;
      Tensor loss = ops::cross_entropy_forward(logits, targets, -100, smoothing, lse);
      Tensor loss_c =
          ops::cross_entropy_forward(on_cuda(logits), on_cuda(targets), -100, smoothing, lse_c);
      EXPECT_TRUE(close_elementwise(loss_c, loss)) << n << "x" << vocab << " eps " << smoothing;
      EXPECT_TRUE(close_elementwise(lse_c, lse)) << n << "x" << vocab;
      Tensor dloss = uniform({n}, rng), dlogits = uniform({n, vocab}, rng);
      Tensor dlogits_c = on_cuda(dlogits);
      ops::cross_entropy_backward(dloss, logits, targets, -100, smoothing, lse, dlogits);
      ops::cross_entropy_backward(on_cuda(dloss), on_cuda(logits), on_cuda(targets), -100,
                                  smoothing, on_cuda(lse), dlogits_c);
      EXPECT_TRUE(close_elementwise(dlogits_c, dlogits)) << n << "x" << vocab;
    }
  Tensor bad = on_cuda(Tensor::from_vector(std::vector<int32_t>{1, 7}, {2})), lse;
  EXPECT_THROW(ops::cross_entropy_forward(on_cuda(Tensor::zeros({2, 5})), bad, -100, 0.f, lse),
               std::invalid_argument);
}

TEST(CudaAdam, StepsMatchCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(16);
  for (int64_t n : {int64_t(1), int64_t(7), int64_t(100003)})
    for (float decay : {0.f, 0.01f}) {
      Tensor param = uniform({n}, rng), m = uniform({n}, rng, -0.1f, 0.1f);
      Tensor v = uniform({n}, rng, 0.f, 0.01f);
      Tensor param_c = on_cuda(param), m_c = on_cuda(m), v_c = on_cuda(v);
      for (int64_t step = 1; step <= 5; ++step) {
        Tensor grad = uniform({n}, rng);
        ops::AdamParams p{1e-3f, 0.9f, 0.98f, 1e-9f, decay, step};
        ops::adam_update(param, grad, m, v, p, 0.5f);
        ops::adam_update(param_c, on_cuda(grad), m_c, v_c, p, 0.5f);
      }
      EXPECT_TRUE(close_elementwise(param_c, param)) << n;
      EXPECT_TRUE(close_elementwise(m_c, m)) << n;
      EXPECT_TRUE(close_elementwise(v_c, v)) << n;
    }
}

}  // namespace
}  // namespace qkv::test
