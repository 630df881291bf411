// Decoding: the KV-cached step equals the full (uncached) decoder, batched search equals
// sentence-by-sentence search, beam search finds the best hypothesis of an exhaustive search,
// and the decoding loop stops calling the system allocator after its first steps.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "decode/incremental.h"
#include "decode/search.h"
#include "support/torch_ref.h"
#include "tensor/allocator.h"

namespace qkv::test {
namespace {

nn::Seq2SeqConfig tiny_config(int64_t vocab, bool pre_norm) {
  nn::Seq2SeqConfig c;
  c.vocab_size = vocab, c.d_model = 32, c.heads = 4, c.d_ff = 64;
  c.encoder_layers = 2, c.decoder_layers = 2, c.dropout = 0.f, c.max_positions = 64;
  c.pre_norm = pre_norm;
  return c;
}

// A model with random weights whose outputs are far from uniform (so that ties are unlikely).
std::unique_ptr<nn::Seq2Seq> random_model(const nn::Seq2SeqConfig& c, uint64_t seed) {
  auto m = std::make_unique<nn::Seq2Seq>(c);
  Rng rng(seed);
  m->init(rng);
  for (auto& [name, v] : m->params())
    if (name == "final_logits_bias") Var(v).mutable_value().copy_from(randn(v.shape(), rng, 2.f));
  return m;
}

Tensor ids(const std::vector<int32_t>& v, const Shape& s) {
  return Tensor::from_vector(v, s);
}

class DecodeTest : public ::testing::TestWithParam<bool> {};

TEST_P(DecodeTest, CachedStepsEqualTheFullDecoder) {
  auto model = random_model(tiny_config(23, GetParam()), 3);
  Tensor src = ids({5, 6, 7, 8, 9, 10, 11, 0, 0, 4, 5, 6}, {2, 6});
  Tensor src_len = ids({6, 4}, {2});
  src.data<int32_t>()[6] = 11;
  Tensor tgt = ids({2, 9, 4, 13, 7, 2, 6, 6, 12, 5}, {2, 5});
  nn::Context ctx;
  Var memory = model->encode(src, src_len, ctx);
  Tensor full = model->logits(model->decode(tgt, memory, src_len, ctx)).value();  // [2, 5, V]
  decode::PackedDecoder weights(*model);
  decode::IncrementalDecoder dec(weights, memory, src_len, 8);
  for (int64_t t = 0; t < 5; ++t) {
    Tensor step_ids = ids({tgt.data<int32_t>()[t], tgt.data<int32_t>()[5 + t]}, {2});
    Tensor logits = dec.step(step_ids);  // [2, V]
    for (int64_t b = 0; b < 2; ++b) {
      Tensor want = full.slice_rows(b, b + 1).reshape({5, 23}).slice_rows(t, t + 1).reshape({23});
      Tensor got = logits.slice_rows(b, b + 1).reshape({23});
      expect_close(got, want, 1e-5, "step " + std::to_string(t) + " row " + std::to_string(b));
    }
  }
}

TEST_P(DecodeTest, BatchedSearchEqualsOneByOne) {
  auto model = random_model(tiny_config(31, GetParam()), 4);
  decode::PackedDecoder weights(*model);  // packed once, reused by every one-sentence search
  std::vector<std::vector<int32_t>> sources = {
      {5, 6, 7}, {9, 10, 11, 12, 13, 14, 15}, {20}, {8, 8, 9, 4}};
  for (int beam : {1, 4}) {
    decode::SearchOptions o;
    o.beam = beam, o.n_best = beam, o.max_length = 12;
    int64_t s = 7, b = int64_t(sources.size());
    Tensor src = Tensor::zeros({b, s}, DType::i32), len = Tensor::empty({b}, DType::i32);
    for (int64_t i = 0; i < b; ++i) {
      for (size_t j = 0; j < sources[i].size(); ++j)
        src.data<int32_t>()[i * s + int64_t(j)] = sources[i][j];
      len.data<int32_t>()[i] = int32_t(sources[i].size());
    }
    auto batched = decode::search(*model, src, len, o);
    for (int64_t i = 0; i < b; ++i) {
      int64_t n = int64_t(sources[i].size());
      auto single = decode::search(weights, ids(sources[i], {1, n}), ids({int32_t(n)}, {1}), o);
      ASSERT_EQ(single[0].size(), batched[i].size()) << "sentence " << i << " beam " << beam;
      for (size_t h = 0; h < single[0].size(); ++h) {
        EXPECT_EQ(single[0][h].tokens, batched[i][h].tokens)
            << "sentence " << i << " beam " << beam;
        EXPECT_NEAR(single[0][h].log_prob, batched[i][h].log_prob, 1e-4);
      }
    }
  }
}

// Total log-probability of `tokens` + <eos> given src, by teacher forcing.
double sequence_log_prob(const nn::Seq2Seq& m, const Tensor& src, const Tensor& len,
                         const std::vector<int32_t>& tokens) {
  const auto& c = m.config();
  std::vector<int32_t> in{c.bos_id}, out = tokens;
  in.insert(in.end(), tokens.begin(), tokens.end());
  out.push_back(c.eos_id);
  int64_t t = int64_t(in.size());
  nn::Context ctx;
  Tensor logits = m.forward(src, len, ids(in, {1, t}), ctx).value().reshape({t, c.vocab_size});
  Tensor lp = ops::log_softmax_forward(logits);
  double sum = 0;
  for (int64_t i = 0; i < t; ++i) sum += lp.data<float>()[i * c.vocab_size + out[i]];
  return sum;
}

TEST_P(DecodeTest, BeamSearchFindsTheExhaustiveBest) {
  // Vocabulary: pad, unk, bos, eos and 3 words; outputs of up to 3 words (+ <eos>).
  auto model = random_model(tiny_config(7, GetParam()), 9);
  Tensor src = ids({4, 5, 6, 4}, {1, 4}), len = ids({4}, {1});
  const std::vector<int32_t> words = {1, 4, 5, 6};  // unk can be emitted too
  for (float penalty : {0.f, 1.f}) {
    double best = -INFINITY;
    std::vector<int32_t> best_tokens;
    std::function<void(std::vector<int32_t>&)> visit = [&](std::vector<int32_t>& prefix) {
      double lp = sequence_log_prob(*model, src, len, prefix);
      double score = penalty == 0 ? lp : lp / std::pow(double(prefix.size() + 1), penalty);
      if (score > best) best = score, best_tokens = prefix;
      if (prefix.size() == 3) return;
      for (int32_t w : words) {
        prefix.push_back(w);
        visit(prefix);
        prefix.pop_back();
      }
    };
    std::vector<int32_t> empty;
    visit(empty);
    decode::SearchOptions o;
    o.beam = 64;  // wider than the 4^3 prefixes, so the search cannot prune the best away
    o.length_penalty = penalty;
    o.max_length = 4, o.max_length_ratio = 1.f, o.max_length_offset = 0;
    auto hyps = decode::search(*model, src, len, o);
    ASSERT_FALSE(hyps[0].empty());
    EXPECT_EQ(hyps[0][0].tokens, best_tokens) << "length penalty " << penalty;
    EXPECT_NEAR(hyps[0][0].score, best, 1e-4);
  }
}

TEST_P(DecodeTest, MinLengthDelaysEos) {
  // A model that wants to stop at once: <eos> gets a large bias.
  auto model = random_model(tiny_config(19, GetParam()), 6);
  for (auto& [name, v] : model->params())
    if (name == "final_logits_bias")
      Var(v).mutable_value().data<float>()[model->config().eos_id] = 20.f;
  Tensor src = ids({5, 6, 7, 8, 9, 10, 11, 12}, {2, 4}), len = ids({4, 3}, {2});
  for (int beam : {1, 3}) {
    decode::SearchOptions o;
    o.beam = beam, o.n_best = beam;
    auto free_length = decode::search(*model, src, len, o);
    EXPECT_TRUE(free_length[0][0].tokens.empty()) << "beam " << beam;
    o.min_length = 6, o.max_length = 7;  // exactly 6 tokens, then the forced <eos>
    auto fixed = decode::search(*model, src, len, o);
    for (size_t b = 0; b < fixed.size(); ++b) {
      ASSERT_EQ(fixed[b].size(), size_t(beam)) << "sentence " << b << " beam " << beam;
      for (const auto& h : fixed[b]) {
        EXPECT_EQ(h.tokens.size(), 6u) << "sentence " << b << " beam " << beam;
        // <eos> appears only at the end; its score is part of log_prob, as without min_length.
        for (int32_t t : h.tokens) EXPECT_NE(t, model->config().eos_id);
        EXPECT_NEAR(h.log_prob,
                    sequence_log_prob(*model, src.slice_rows(int64_t(b), int64_t(b) + 1),
                                      len.slice_rows(int64_t(b), int64_t(b) + 1), h.tokens),
                    1e-4);
      }
    }
  }
}

TEST_P(DecodeTest, DecodingLoopStopsCallingTheSystemAllocator) {
  auto model = random_model(tiny_config(29, GetParam()), 5);
  Tensor src = ids({5, 6, 7, 8, 9, 10}, {2, 3}), len = ids({3, 3}, {2});
  nn::Context ctx;
  Var memory = model->encode(src, len, ctx);
  decode::PackedDecoder weights(*model);
  decode::IncrementalDecoder dec(weights, memory, len, 32);
  Tensor tokens = ids({2, 2}, {2});
  for (int i = 0; i < 3; ++i) dec.step(tokens);  // warm-up
  size_t before = allocator_for(Device::cpu).stats().system_allocations;
  for (int i = 0; i < 20; ++i) dec.step(tokens);
  EXPECT_EQ(allocator_for(Device::cpu).stats().system_allocations, before);
}

INSTANTIATE_TEST_SUITE_P(PostAndPreNorm, DecodeTest, ::testing::Values(false, true));

}  // namespace
}  // namespace qkv::test
