// Embedding, LayerNorm, softmax, activations and dropout against PyTorch, plus finite
// differences. Tolerances (norm-wise relative error against PyTorch in float64): 1e-5 for
// elementwise ops (relu, gelu, gelu_tanh, embedding lookup), 1e-4 after reductions (layer norm,
// softmax, log-softmax, embedding backward).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "ops/cpu/vec_math.h"
#include "support/gradcheck.h"
#include "support/op_compare.h"
#include "tensor/threads.h"

namespace qkv::test {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
const std::vector<Shape> kShapes = {{3, 7, 33}, {1, 1}, {5, 1000}, {64, 700}, {17}};

// Runs f with `threads` OpenMP threads, then restores the previous count.
template <class F>
auto with_threads(int threads, F f) {
  int before = num_threads();
  set_num_threads(threads);
  auto result = f();
  set_num_threads(before);
  return result;
}

TEST(Embedding, MatchesTorchWithRepeatedIdsAndScale) {
  Rng rng(1);
  // {ids shape, vocab, dim}; small vocabularies repeat ids; the last case runs multithreaded.
  std::vector<std::tuple<Shape, int, int64_t>> cases = {
      {{3, 7}, 11, 33}, {{1, 1}, 1, 1}, {{5}, 3, 16}, {{2, 3, 4}, 50, 7}, {{64, 96}, 40, 64}};
  for (auto& [ids_shape, vocab, dim] : cases)
    for (float s : {1.f, 2.5f}) {
      TensorMap in{{"ids", rand_ids(ids_shape, vocab, rng)}, {"table", randn({vocab, dim}, rng)}};
      compare_with_torch(
          "embedding", in, {{"scale", s}},
          [s](auto& v) { return embedding(v["ids"].value(), v["table"], s); }, 1e-5, 1e-4, rng);
    }
}

TEST(Embedding, BackwardIsTheSameForAnyThreadCount) {
  Rng rng(2);
  Tensor ids = rand_ids({128, 64}, 30, rng), dy = randn({128, 64, 40}, rng);
  auto run = [&] {
    Tensor dtable = Tensor::zeros({30, 40});
    ops::embedding_backward(dy, ids, dtable, 0.5f);
    return dtable.to_vector();
  };
  EXPECT_EQ(with_threads(1, run), with_threads(std::max(2, num_threads()), run));
  EXPECT_EQ(with_threads(3, run), with_threads(1, run));
}

TEST(Embedding, RejectsIdsOutsideTheVocabulary) {
  Tensor table = Tensor::zeros({10, 4});
  for (int32_t bad : {10, -1, 12345}) {
    Tensor ids = Tensor::from_vector(std::vector<int32_t>{1, 2, bad}, {3});
    try {
      ops::embedding_forward(ids, table);
      FAIL() << "id " << bad << " was accepted";
    } catch (const std::invalid_argument& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find("id " + std::to_string(bad)), std::string::npos) << msg;
      EXPECT_NE(msg.find("size 10"), std::string::npos) << msg;
    }
    Tensor dtable = Tensor::zeros({10, 4});
    EXPECT_THROW(ops::embedding_backward(Tensor::zeros({3, 4}), ids, dtable),
                 std::invalid_argument);
  }
  EXPECT_THROW(ops::embedding_forward(Tensor::zeros({3}), table), std::invalid_argument);
}

TEST(LayerNorm, MatchesTorch) {
  Rng rng(3);
  std::vector<Shape> shapes = kShapes;
  shapes[1] = {1, 3};  // d = 1 (exact test below) and d = 2 are degenerate: xhat is 0 or +-1
  for (const Shape& shape : shapes)
    for (float eps : {1e-5f, 1e-2f}) {
      int64_t d = shape.back();
      // An offset mean checks that the variance does not cancel.
      TensorMap in{{"x", ops::add(randn(shape, rng, 2.f), Tensor::full({1}, 30.f))},
                   {"gamma", randn({d}, rng)},
                   {"beta", randn({d}, rng)}};
      compare_with_torch(
          "layer_norm", in, {{"eps", eps}},
          [eps](auto& v) { return layer_norm(v["x"], v["gamma"], v["beta"], eps); }, 1e-4, 1e-4,
          rng);
    }
}

TEST(LayerNorm, SingleFeatureGivesBeta) {
  // d = 1: x - mean = 0, so y = beta, dx = 0, dgamma = 0, dbeta = dy.
  Tensor x = Tensor::from_vector(std::vector<float>{3.f, -7.f}, {2, 1}), mean, rstd;
  Tensor gamma = Tensor::full({1}, 2.f), beta = Tensor::full({1}, 0.25f);
  EXPECT_EQ(ops::layer_norm_forward(x, gamma, beta, 1e-5f, mean, rstd).to_vector(),
            (std::vector<float>{0.25f, 0.25f}));
  Tensor dy = Tensor::from_vector(std::vector<float>{1.f, 2.f}, {2, 1});
  Tensor dx = Tensor::zeros({2, 1}), dgamma = Tensor::zeros({1}), dbeta = Tensor::zeros({1});
  ops::layer_norm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta);
  EXPECT_EQ(dx.to_vector(), (std::vector<float>{0.f, 0.f}));
  EXPECT_EQ(dgamma.item(), 0.f);
  EXPECT_EQ(dbeta.item(), 3.f);
}

TEST(LayerNorm, ParameterGradientsAreTheSameForAnyThreadCount) {
  Rng rng(4);
  Tensor x = randn({300, 96}, rng), gamma = randn({96}, rng), beta = randn({96}, rng);
  Tensor dy = randn({300, 96}, rng), mean, rstd;
  ops::layer_norm_forward(x, gamma, beta, 1e-5f, mean, rstd);
  auto run = [&] {
    Tensor dx = Tensor::zeros(x.shape()), dgamma = Tensor::zeros({96}), dbeta = Tensor::zeros({96});
    ops::layer_norm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta);
    std::vector<float> all = dx.to_vector(), g = dgamma.to_vector(), b = dbeta.to_vector();
    all.insert(all.end(), g.begin(), g.end());
    all.insert(all.end(), b.begin(), b.end());
    return all;
  };
  EXPECT_EQ(with_threads(1, run), with_threads(std::max(2, num_threads()), run));
}

TEST(Softmax, MatchesTorchIncludingLargeInputs) {
  Rng rng(5);
  for (const Shape& shape : kShapes)
    for (float magnitude : {1.f, 50.f}) {
      Tensor x = randn(shape, rng, magnitude);
      compare_with_torch(
          "softmax", {{"x", x}}, {}, [](auto& v) { return softmax(v["x"]); }, 1e-4, 1e-4, rng);
      Tensor want = torch_reference("log_softmax", {{"x", x}})["out"];
      expect_close(ops::log_softmax_forward(x), want, 1e-4, "log_softmax");
    }
}

TEST(Softmax, RowsOfMinusInfinity) {
  // Row 0: all -inf -> zeros. Row 1: -inf entries get probability 0 (log-probability -inf).
  Tensor x = Tensor::from_vector(std::vector<float>{-kInf, -kInf, -kInf, 1.f, -kInf, 2.f}, {2, 3});
  std::vector<float> y = ops::softmax_forward(x).to_vector();
  float e = std::exp(1.f);
  std::vector<float> want = {0.f, 0.f, 0.f, 1.f / (1.f + e), 0.f, e / (1.f + e)};
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], want[i], 1e-6) << i;

  std::vector<float> logy = ops::log_softmax_forward(x).to_vector();
  EXPECT_EQ(logy[0], 0.f);
  EXPECT_EQ(logy[2], 0.f);
  EXPECT_EQ(logy[4], -kInf);
  EXPECT_NEAR(logy[3], std::log(want[3]), 1e-6);

  Tensor dx = Tensor::zeros({2, 3});
  ops::softmax_backward(Tensor::full({2, 3}, 1.f), ops::softmax_forward(x), dx);
  for (float g : dx.to_vector()) EXPECT_TRUE(std::isfinite(g));
}

TEST(Activation, MatchesTorch) {
  Rng rng(6);
  std::vector<std::pair<const char*, ops::Activation>> acts = {
      {"relu", ops::Activation::relu},
      {"gelu", ops::Activation::gelu},
      {"gelu_tanh", ops::Activation::gelu_tanh},
      {"silu", ops::Activation::silu}};
  for (auto& [name, act] : acts)
    for (const Shape& shape : kShapes)
      for (float magnitude : {1.f, 6.f}) {
        compare_with_torch(
            name, {{"x", randn(shape, rng, magnitude)}}, {},
            [act](auto& v) { return activation(act, v["x"]); }, 1e-5, 1e-5, rng);
      }
}

TEST(Activation, FromName) {
  EXPECT_EQ(ops::activation_from_name("relu"), ops::Activation::relu);
  EXPECT_EQ(ops::activation_from_name("gelu"), ops::Activation::gelu);
  EXPECT_EQ(ops::activation_from_name("gelu_tanh"), ops::Activation::gelu_tanh);
  EXPECT_EQ(ops::activation_from_name("silu"), ops::Activation::silu);
  EXPECT_EQ(ops::activation_from_name("swish"), ops::Activation::silu);
  try {
    ops::activation_from_name("mish");
    FAIL() << "unknown activation accepted";
  } catch (const std::invalid_argument& e) {
    std::string msg = e.what();
    for (const char* name : {"mish", "relu", "gelu", "gelu_tanh", "silu"})
      EXPECT_NE(msg.find(name), std::string::npos) << msg;
  }
}

TEST(VecMath, AccurateOverTheFloatRange) {
  double exp_err = 0, tanh_err = 0, gelu_err = 0;
  for (float x = -87.f; x < 88.f; x += 0.0137f)
    exp_err = std::max(exp_err, std::fabs(ops::cpu::exp_approx(x) / std::exp(double(x)) - 1));
  for (float x = -12.f; x < 12.f; x += 0.00071f) {
    tanh_err = std::max(tanh_err, std::fabs(ops::cpu::tanh_approx(x) - std::tanh(double(x))));
    double gelu = 0.5 * x * std::erfc(-x / std::sqrt(2.0));
    double got = x * ops::cpu::normal_cdf_pdf(x).cdf;
    if (gelu != 0) gelu_err = std::max(gelu_err, std::fabs(got / gelu - 1));
  }
  EXPECT_LT(exp_err, 2e-7);
  EXPECT_LT(tanh_err, 2e-7);
  EXPECT_LT(gelu_err, 1e-6);
  EXPECT_EQ(ops::cpu::exp_approx(-kInf), 0.f);
  EXPECT_EQ(ops::cpu::exp_approx(0.f), 1.f);
  EXPECT_TRUE(std::isnan(ops::cpu::exp_approx(std::numeric_limits<float>::quiet_NaN())));
}

TEST(Dropout, DropsAboutPAndScalesTheRest) {
  Rng rng(7);
  Tensor x = randn({100, 1000}, rng);
  std::vector<float> xs = x.to_vector();
  for (float p : {0.1f, 0.5f, 0.9f}) {
    Tensor mask;
    std::vector<float> y = ops::dropout_forward(x, p, rng, mask).to_vector();
    const uint8_t* m = mask.data<uint8_t>();
    int64_t dropped = 0;
    for (size_t i = 0; i < y.size(); ++i) {
      ASSERT_LE(m[i], 1);
      dropped += m[i] == 0;
      EXPECT_FLOAT_EQ(y[i], m[i] ? xs[i] / (1.f - p) : 0.f) << i;
    }
    // Binomial(1e5, p): the standard deviation of the rate is at most 0.0016.
    EXPECT_NEAR(double(dropped) / double(y.size()), p, 0.01) << "p = " << p;
  }
}

TEST(Dropout, SeedFixesTheMaskAndBackwardReusesIt) {
  Tensor x = Tensor::full({3, 333}, 1.f), mask_a, mask_b, mask_c;
  Rng a(42), b(42), c(43);
  std::vector<float> ya = ops::dropout_forward(x, 0.3f, a, mask_a).to_vector();
  EXPECT_EQ(ya, ops::dropout_forward(x, 0.3f, b, mask_b).to_vector());
  EXPECT_NE(ya, ops::dropout_forward(x, 0.3f, c, mask_c).to_vector());
  EXPECT_EQ(a.offset(), b.offset());
  // A second draw from the same Rng moves on to fresh words.
  Tensor mask_next;
  EXPECT_NE(ya, ops::dropout_forward(x, 0.3f, a, mask_next).to_vector());

  // The gradient of sum(dropout(x)) is mask / (1 - p): the forward output when x is all ones.
  Var xv(x, true);
  Rng d(42);
  Tape tape;
  Var loss;
  {
    Recording rec(tape);
    loss = sum(dropout(xv, 0.3f, d));
  }
  tape.backward(loss);
  EXPECT_EQ(xv.grad().to_vector(), ya);
}

TEST(Dropout, MaskComesFromTheReservedRandomWords) {
  // Element i is kept when rng.bits(base, i) >= p * 2^32, base being the offset before the call.
  Rng rng(42, 5), reference(42, 5);
  Tensor x = Tensor::full({1001}, 1.f), mask;
  ops::dropout_forward(x, 0.25f, rng, mask);
  EXPECT_EQ(rng.offset(), 5u + (1001 + 3) / 4);
  for (int64_t i = 0; i < 1001; ++i)
    ASSERT_EQ(mask.data<uint8_t>()[i], reference.bits(5, i) >= (1u << 30)) << i;
}

TEST(Dropout, ZeroIsIdentityAndBadPIsRejected) {
  Rng rng(8);
  Var x(randn({4, 5}, rng), true);
  uint64_t offset = rng.offset();
  Tape tape;
  {
    Recording rec(tape);
    Var y = dropout(x, 0.f, rng);
    EXPECT_EQ(y.value().data<float>(), x.value().data<float>());
    EXPECT_TRUE(y.requires_grad());
  }
  EXPECT_EQ(tape.size(), 0u);
  EXPECT_EQ(rng.offset(), offset);
  Tensor mask;
  EXPECT_EQ(ops::dropout_forward(x.value(), 0.f, rng, mask).to_vector(), x.value().to_vector());
  for (float p : {1.f, -0.1f, 1.5f, std::numeric_limits<float>::quiet_NaN()})
    EXPECT_THROW(ops::dropout_forward(x.value(), p, rng, mask), std::invalid_argument) << p;
  EXPECT_THROW(dropout(x, 1.f, rng), std::invalid_argument);
}

// Inputs at least 0.1 away from 0, so that finite differences do not straddle relu's kink.
Tensor away_from_zero(const Shape& shape, Rng& rng) {
  std::vector<float> v = randn(shape, rng).to_vector();
  for (float& e : v) e = e < 0 ? e - 0.1f : e + 0.1f;
  return Tensor::from_vector(v, shape);
}

TEST(Gradcheck, NnOps) {
  Rng rng(9);
  gradcheck("layer_norm", [](auto& v) { return layer_norm(v[0], v[1], v[2]); },
            {randn({3, 5, 6}, rng), randn({6}, rng), randn({6}, rng)});
  gradcheck("softmax", [](auto& v) { return softmax(v[0]); }, {randn({4, 9}, rng, 2.f)});
  for (auto act : {ops::Activation::relu, ops::Activation::gelu, ops::Activation::gelu_tanh,
                   ops::Activation::silu})
    gradcheck("activation", [act](auto& v) { return activation(act, v[0]); },
              {away_from_zero({3, 11}, rng)});
  Tensor ids = Tensor::from_vector(std::vector<int32_t>{2, 0, 2, 4, 2}, {5});
  gradcheck("embedding", [&](auto& v) { return embedding(ids, v[0], 1.5f); }, {randn({6, 7}, rng)});
  // A fresh Rng with one seed in every call: the same mask each time.
  gradcheck("dropout",
            [](auto& v) {
              Rng fixed(11);
              return dropout(v[0], 0.4f, fixed);
            },
            {randn({5, 13}, rng)});
}

}  // namespace
}  // namespace qkv::test
