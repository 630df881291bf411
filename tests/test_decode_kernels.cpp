// The small kernels of a decoding step: the best tokens of each row under the log-softmax
// (decode::best_tokens) against a full log-softmax and sort, the KV-cache gather of beam
// reordering against gather_rows, and attention over a cache that beams share against float64
// attention over each row's history gathered by hand.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

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

// softmax(q . k * scale) @ v in float64 for query row n, head h: position t of its history in
// cache row slots[n, t].
std::vector<double> attention_over_history(const Tensor& q, const Tensor& k_cache,
                                           const Tensor& v_cache, const Tensor& slots, int64_t len,
                                           float scale, int64_t n, int64_t h) {
  const int64_t heads = q.size(1), cap = k_cache.size(2), d = q.size(3);
  auto row = [&](const Tensor& cache, int64_t t) {
    return cache.data<float>() +
           ((int64_t(slots.data<int32_t>()[n * cap + t]) * heads + h) * cap + t) * d;
  };
  const float* qn = q.data<float>() + (n * heads + h) * d;
  std::vector<double> score(static_cast<size_t>(len)), out(static_cast<size_t>(d), 0.0);
  double max = -INFINITY, sum = 0.0;
  for (int64_t t = 0; t < len; ++t) {
    double dot = 0.0;
    for (int64_t c = 0; c < d; ++c) dot += double(qn[c]) * row(k_cache, t)[c];
    score[size_t(t)] = dot * scale;
    max = std::max(max, score[size_t(t)]);
  }
  for (double& s : score) sum += s = std::exp(s - max);
  for (int64_t t = 0; t < len; ++t)
    for (int64_t c = 0; c < d; ++c) out[size_t(c)] += score[size_t(t)] / sum * row(v_cache, t)[c];
  return out;
}

TEST(SharedCacheAttention, EqualsAttentionOverEachRowsHistory) {
  Rng rng(23);
  // Head dims with a kernel of their own (64) and without (12); 1 to all 7 positions.
  for (auto [d, len] : {std::pair{64, 1}, {64, 7}, {64, 6}, {12, 5}}) {
    const int64_t rows = 5, n = 4, heads = 2, cap = 7;
    Tensor k_cache = randn({rows, heads, cap, d}, rng), v_cache = randn({rows, heads, cap, d}, rng);
    Tensor q = randn({n, heads, 1, d}, rng);
    std::vector<int32_t> slot_values(size_t(n * cap));
    for (int32_t& s : slot_values) s = int32_t(rng.below(rows));
    Tensor slots = Tensor::from_vector(slot_values, {n, cap});
    float scale = 1.f / std::sqrt(float(d));
    Tensor out = ops::shared_cache_attention(q, k_cache, v_cache, slots, len, scale);
    ASSERT_EQ(out.shape(), q.shape());
    for (int64_t i = 0; i < n; ++i)
      for (int64_t h = 0; h < heads; ++h) {
        std::vector<double> want =
            attention_over_history(q, k_cache, v_cache, slots, len, scale, i, h);
        for (int64_t c = 0; c < d; ++c)
          ASSERT_NEAR(out.data<float>()[(i * heads + h) * d + c], want[size_t(c)], 1e-5)
              << "d " << d << " len " << len << " row " << i << " head " << h << " " << c;
      }
  }
}

TEST(SharedCacheAttention, RejectsSlotsOutsideTheCacheAndBadShapes) {
  Rng rng(24);
  Tensor cache = randn({2, 1, 3, 8}, rng), q = randn({2, 1, 1, 8}, rng);
  Tensor slots = Tensor::from_vector(std::vector<int32_t>{0, 1, 0, 1, 2, 0}, {2, 3});
  EXPECT_THROW(ops::shared_cache_attention(q, cache, cache, slots, 2, 1.f), std::invalid_argument);
  EXPECT_NO_THROW(ops::shared_cache_attention(q, cache, cache, slots, 1, 1.f));
  EXPECT_THROW(ops::shared_cache_attention(q, cache, cache, slots, 4, 1.f), std::invalid_argument);
  EXPECT_THROW(ops::shared_cache_attention(q, cache, cache, slots.reshape({3, 2}), 1, 1.f),
               std::invalid_argument);
}

}  // namespace
}  // namespace qkv::test
