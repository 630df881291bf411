// The small kernels of a decoding step: the best tokens of each row under the log-softmax
// (decode::best_tokens) against a full log-softmax and sort, and the KV-cache gather of beam
// reordering against gather_rows.
#include <gtest/gtest.h>

#include <algorithm>

#include "decode/best_tokens.h"
#include "ops/ops.h"
#include "support/torch_ref.h"

namespace qkv::test {
namespace {

TEST(BestTokens, EqualsFullLogSoftmaxAndSort) {
  Rng rng(21);
  const int32_t eos = 2;
  const std::vector<int32_t> skip{0, 1};
  // Odd vocabularies, n larger than the tokens there are (vocab 7), and many rows (threads).
  for (auto [rows, vocab, n] : {std::tuple{3, 7, 10}, {5, 1001, 6}, {40, 3001, 2}}) {
    Tensor logits = randn({rows, vocab}, rng, 3.f);
    logits.data<float>()[5] = logits.data<float>()[6];  // a tie: the lower id comes first
    decode::BestTokens got;
    decode::best_tokens(logits, n, skip, eos, got);
    Tensor logp = ops::log_softmax_forward(logits);
    for (int64_t r = 0; r < rows; ++r) {
      const float* lp = logp.data<float>() + r * vocab;
      std::vector<std::pair<float, int32_t>> want;
      for (int32_t v = 3; v < vocab; ++v) want.emplace_back(lp[v], v);
      std::stable_sort(want.begin(), want.end(),
                       [](auto& x, auto& y) { return x.first > y.first; });
      want.resize(size_t(n), {-INFINITY, -1});
      for (int64_t i = 0; i < n; ++i) {
        EXPECT_EQ(got.best[size_t(r * n + i)].second, want[size_t(i)].second) << r << " " << i;
        EXPECT_FLOAT_EQ(got.best[size_t(r * n + i)].first, want[size_t(i)].first);
      }
      EXPECT_FLOAT_EQ(got.eos_log_prob[size_t(r)], lp[eos]);
    }
  }
}

TEST(KvCacheGather, CopiesTheWrittenPrefixOfRows) {
  Rng rng(22);
  Tensor cache = randn({4, 3, 5, 7}, rng);  // [N, H, capacity, D]
  Tensor index = Tensor::from_vector(std::vector<int32_t>{3, 0, 3}, {3});
  Tensor out = Tensor::zeros({4, 3, 5, 7});
  ops::kv_cache_gather(cache, index, 2, out);
  Tensor want = ops::gather_rows(cache, index);
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t h = 0; h < 3; ++h)
      for (int64_t p = 0; p < 5; ++p)
        for (int64_t d = 0; d < 7; ++d) {
          int64_t at = ((i * 3 + h) * 5 + p) * 7 + d;
          float w = i < 3 && p < 2 ? want.data<float>()[at] : 0.f;
          ASSERT_EQ(out.data<float>()[at], w) << i << " " << h << " " << p << " " << d;
        }
  // In place, with rows that only leave (strictly increasing index).
  Tensor before = ops::gather_rows(cache, Tensor::from_vector(std::vector<int32_t>{1, 3}, {2}));
  ops::kv_cache_gather(cache, Tensor::from_vector(std::vector<int32_t>{1, 3}, {2}), 5, cache);
  for (int64_t i = 0; i < before.numel(); ++i)
    ASSERT_EQ(cache.data<float>()[i], before.data<float>()[i]);
}

}  // namespace
}  // namespace qkv::test
