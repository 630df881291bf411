// Fused softmax cross-entropy against torch.nn.functional.cross_entropy (float64): per-row
// losses and the logits gradient of the op, and the summed autograd function, to 1e-4
// (norm-wise relative), with and without label smoothing and with ignored rows.
#include <gtest/gtest.h>

#include "support/gradcheck.h"
#include "support/op_compare.h"

namespace qkv::test {
namespace {

// Random targets in [0, vocab), with every third row set to ignore_index.
Tensor targets_with_ignored(int64_t n, int32_t vocab, int ignore_index, Rng& rng) {
  Tensor t = rand_ids({n}, vocab, rng);
  for (int64_t i = 0; i < n; i += 3) t.data<int32_t>()[i] = ignore_index;
  return t;
}

TEST(CrossEntropy, PerRowLossAndGradientMatchTorch) {
  Rng rng(31);
  for (int64_t vocab : {1000, 37, 1})
    for (float smoothing : {0.f, 0.1f})
      for (int ignore_index : {-100, 0}) {
        SCOPED_TRACE("V=" + std::to_string(vocab) + " eps=" + std::to_string(smoothing) +
                     " ignore=" + std::to_string(ignore_index));
        int64_t n = 13;
        Tensor logits = randn({n, vocab}, rng, 4.f);
        Tensor targets = targets_with_ignored(n, int32_t(vocab), ignore_index, rng);
        Tensor dloss = randn({n}, rng);
        nlohmann::json attrs{{"ignore_index", ignore_index}, {"label_smoothing", smoothing}};
        TensorMap want = torch_reference(
            "cross_entropy", {{"logits", logits}, {"targets", targets}, {"dout", dloss}}, attrs);
        Tensor lse;
        Tensor loss = ops::cross_entropy_forward(logits, targets, ignore_index, smoothing, lse);
        Tensor dlogits = Tensor::zeros(logits.shape());
        ops::cross_entropy_backward(dloss, logits, targets, ignore_index, smoothing, lse, dlogits);
        expect_close(loss, want["out"], 1e-4, "loss");
        expect_close(dlogits, want["d_logits"], 1e-4, "d_logits");
      }
}

TEST(CrossEntropy, SumMatchesTorchThroughAutograd) {
  Rng rng(32);
  for (float smoothing : {0.f, 0.1f}) {
    Tensor targets = targets_with_ignored(29, 101, -100, rng);
    compare_with_torch(
        "cross_entropy_sum", {{"logits", randn({29, 101}, rng, 3.f)}, {"targets", targets}},
        {{"ignore_index", -100}, {"label_smoothing", smoothing}},
        [&](auto& v) { return cross_entropy_sum(v["logits"], targets, -100, smoothing); }, 1e-4,
        1e-4, rng);
  }
}

TEST(CrossEntropy, LargeLogitsStayFinite) {
  Tensor logits = Tensor::from_vector(std::vector<float>{1000.f, -1000.f, 0.f}, {1, 3});
  Tensor lse;
  Tensor targets = Tensor::from_vector(std::vector<int32_t>{1}, {1});
  EXPECT_NEAR(ops::cross_entropy_forward(logits, targets, -100, 0.f, lse).item(), 2000.f, 1e-2);
}

TEST(CrossEntropy, RejectsTargetsOutsideTheVocabulary) {
  Tensor lse, logits = Tensor::zeros({2, 5});
  EXPECT_THROW(ops::cross_entropy_forward(
                   logits, Tensor::from_vector(std::vector<int32_t>{1, 5}, {2}), -100, 0.f, lse),
               std::invalid_argument);
  EXPECT_THROW(ops::cross_entropy_forward(logits, Tensor::from_vector(std::vector<int32_t>{1}, {1}),
                                          -100, 0.f, lse),
               std::invalid_argument);
}

TEST(Gradcheck, CrossEntropySum) {
  Rng rng(33);
  Tensor targets = Tensor::from_vector(std::vector<int32_t>{2, -100, 0, 4}, {4});
  gradcheck("cross_entropy_sum",
            [&](auto& v) { return cross_entropy_sum(v[0], targets, -100, 0.1f); },
            {randn({4, 5}, rng)});
}

}  // namespace
}  // namespace qkv::test
