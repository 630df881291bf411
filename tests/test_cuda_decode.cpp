// Decoding on cuda against the CPU: a tiny random Seq2Seq (the cuda training tests' model), the
// same weights on both devices, greedy and beam search over sentences of different lengths.
// The hypotheses' tokens agree exactly and their log-probabilities to 1e-4 relative (a near tie
// between two candidates could flip a token: these seeds have none). Skipped without a CUDA
// device.
#include <cmath>

#include "decode/search.h"
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

}  // namespace
}  // namespace qkv::test
