// Decoding on cuda against the CPU: a tiny random Seq2Seq (the cuda training tests' model), the
// same weights on both devices, greedy and beam search over sentences of different lengths.
// The hypotheses' tokens agree exactly and their log-probabilities to 1e-4 relative (a near tie
// between two candidates could flip a token: these seeds have none). Skipped in builds without CUDA
// (fails in one with CUDA but no device).
#include <cmath>
#include <span>
#include <vector>

#include "decode/best_tokens.h"
#include "decode/search.h"
#include "ops/ops.h"
#include "support/cuda_compare.h"
#include "support/tiny_training.h"

namespace qkv::test {
namespace {

TEST(CudaDecode, GreedyAndBeamSearchMatchCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  nn::Seq2SeqConfig config = tiny_training_config();
  config.dropout = 0.f;
  nn::Seq2Seq cpu_model(config), cuda_model(config);
  Rng init_a(21), init_b(21);
  cpu_model.init(init_a);
  cuda_model.init(init_b);
  cuda_model.to(Device::cuda);

  Rng data(22);
  const int64_t batch = 4, s = 8;
  Tensor src = random_ids({batch, s}, data, 4, int(config.vocab_size));  // [B, S]
  Tensor lengths = Tensor::from_vector(std::vector<int32_t>{8, 3, 1, 6}, {batch});
  for (int beam : {1, 4}) {
    SCOPED_TRACE(testing::Message() << "beam " << beam);
    decode::SearchOptions options;
    options.beam = beam;
    options.n_best = beam;
    options.max_length = 12;
    auto want = decode::search(cpu_model, src, lengths, options);
    auto got = decode::search(cuda_model, src, lengths, options);
    ASSERT_EQ(got.size(), want.size());
    size_t tokens = 0;
    for (const auto& hyps : want) tokens += hyps[0].tokens.size();
    EXPECT_GE(tokens, 4 * want.size()) << "hypotheses too short to test much";
    for (size_t b = 0; b < want.size(); ++b) {
      ASSERT_EQ(got[b].size(), want[b].size()) << "sentence " << b;
      for (size_t h = 0; h < want[b].size(); ++h) {
        EXPECT_EQ(got[b][h].tokens, want[b][h].tokens) << "sentence " << b << " hypothesis " << h;
        EXPECT_NEAR(got[b][h].log_prob, want[b][h].log_prob, 1e-4 * std::fabs(want[b][h].log_prob))
            << "sentence " << b << " hypothesis " << h;
      }
    }
  }
}

// A beam step's candidates chosen on the device equal the CPU's: logits in steps of 0.25 (many
// ties, broken to the lower id), skipped ids and eos left out, fewer tokens than asked for.
TEST(CudaDecode, BestTokensOnTheDeviceMatchCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(23);
  for (int64_t vocab : {5, 300, 8003}) {
    for (int64_t n : {1, 2, 10, 32}) {
      Tensor logits = uniform({7, vocab}, rng, -3.f, 3.f);
      for (float& x : std::span(logits.data<float>(), size_t(logits.numel())))
        x = std::round(x * 4.f) / 4.f;
      decode::BestTokens want, got;
      const std::vector<int32_t> skip{0, 2};
      decode::best_tokens(logits, n, skip, 3, want);
      decode::best_tokens(on_cuda(logits), n, skip, 3, got);
      SCOPED_TRACE(testing::Message() << "vocab " << vocab << ", n " << n);
      ASSERT_EQ(got.n, want.n);
      for (size_t i = 0; i < want.best.size(); ++i) {
        EXPECT_EQ(got.best[i].second, want.best[i].second) << "entry " << i;
        if (want.best[i].second >= 0) {
          EXPECT_NEAR(got.best[i].first, want.best[i].first, 1e-5) << "entry " << i;
        }
      }
      for (size_t r = 0; r < want.eos_log_prob.size(); ++r)
        EXPECT_NEAR(got.eos_log_prob[r], want.eos_log_prob[r], 1e-5) << "row " << r;
    }
  }
}

// cuda has no fused kernel: it gathers each row's history, then runs its ordinary attention.
TEST(CudaDecode, SharedCacheAttentionMatchesCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(24);
  for (int64_t d : {64, 12}) {
    const int64_t rows = 5, n = 4, heads = 2, cap = 7, len = 6;
    Tensor k_cache = uniform({rows, heads, cap, d}, rng), v_cache = uniform(k_cache.shape(), rng);
    Tensor q = uniform({n, heads, 1, d}, rng);
    std::vector<int32_t> slot_values(size_t(n * cap));
    for (int32_t& s : slot_values) s = int32_t(rng.below(rows));
    Tensor slots = Tensor::from_vector(slot_values, {n, cap});
    float scale = 1.f / std::sqrt(float(d));
    Tensor want = ops::shared_cache_attention(q, k_cache, v_cache, slots, len, scale);
    Tensor got = ops::shared_cache_attention(on_cuda(q), on_cuda(k_cache), on_cuda(v_cache), slots,
                                             len, scale);
    EXPECT_TRUE(close_elementwise(got.to(Device::cpu), want)) << "head dim " << d;
  }
}

}  // namespace
}  // namespace qkv::test
