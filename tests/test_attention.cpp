// Attention, naive and tiled, against PyTorch (float64 softmax(q k^T * scale + mask) @ v):
// output and the gradients of q, k and v to 1e-4 (norm-wise relative), over masks that cover
// causal alignment at the end, KV-cache decoding, padding with an empty row, and several tiles.
#include <gtest/gtest.h>

#include <cmath>

#include "support/gradcheck.h"
#include "support/op_compare.h"

namespace qkv::test {
namespace {

using ops::AttentionImpl;

struct Case {
  int64_t batch, heads, q_len, k_len, head_dim;
  bool causal;
  std::vector<int32_t> key_lengths;  // empty: no padding
};

std::string describe(const Case& c, AttentionImpl impl) {
  return std::string(impl == AttentionImpl::naive ? "naive" : "tiled") + " B" +
         std::to_string(c.batch) + " H" + std::to_string(c.heads) + " Lq" +
         std::to_string(c.q_len) + " Lk" + std::to_string(c.k_len) + " D" +
         std::to_string(c.head_dim) + (c.causal ? " causal" : "") +
         (c.key_lengths.empty() ? "" : " padded");
}

void expect_matches_torch(const Case& c, Rng& rng) {
  TensorMap in{{"q", randn({c.batch, c.heads, c.q_len, c.head_dim}, rng)},
               {"k", randn({c.batch, c.heads, c.k_len, c.head_dim}, rng)},
               {"v", randn({c.batch, c.heads, c.k_len, c.head_dim}, rng)}};
  ops::AttentionMask mask;
  mask.causal = c.causal;
  if (!c.key_lengths.empty()) {
    mask.key_lengths = Tensor::from_vector(c.key_lengths, {c.batch});
    in["key_lengths"] = mask.key_lengths;
  }
  float scale = 1.f / std::sqrt(float(c.head_dim));
  for (AttentionImpl impl : {AttentionImpl::naive, AttentionImpl::tiled}) {
    SCOPED_TRACE(describe(c, impl));
    compare_with_torch(
        "attention", in, {{"scale", scale}, {"causal", c.causal}},
        [&](auto& v) { return attention(v["q"], v["k"], v["v"], mask, scale, impl); }, 1e-4, 1e-4,
        rng);
  }
}

TEST(Attention, MatchesTorchWithoutMask) {
  Rng rng(21);
  expect_matches_torch({2, 3, 17, 17, 8, false, {}}, rng);
  expect_matches_torch({1, 2, 5, 23, 16, false, {}}, rng);
}

TEST(Attention, CausalIsAlignedAtTheEnd) {
  Rng rng(22);
  expect_matches_torch({2, 3, 17, 17, 8, true, {}}, rng);
  expect_matches_torch({2, 3, 5, 23, 8, true, {}}, rng);  // a decoder step over a longer cache
  expect_matches_torch({1, 2, 7, 4, 8, true, {}}, rng);   // more queries than keys: empty rows
}

TEST(Attention, OneQueryOverAKeyValueCache) {
  Rng rng(23);
  expect_matches_torch({2, 4, 1, 9, 8, true, {}}, rng);
  expect_matches_torch({3, 2, 1, 130, 32, false, {130, 77, 1}}, rng);
  // The head dims with kernels of their own (32, 64, 128), past and short of 4 keys at a time.
  expect_matches_torch({2, 2, 1, 38, 64, false, {38, 3}}, rng);
  expect_matches_torch({1, 3, 3, 21, 128, true, {}}, rng);
  expect_matches_torch({2, 1, 8, 9, 32, false, {9, 0}}, rng);
}

TEST(Attention, PaddedKeysIncludingAFullyMaskedRow) {
  Rng rng(24);
  expect_matches_torch({3, 2, 11, 17, 8, false, {17, 0, 6}}, rng);
  expect_matches_torch({3, 2, 17, 17, 8, true, {17, 0, 6}}, rng);
  expect_matches_torch({3, 2, 5, 30, 64, false, {30, 0, 12}}, rng);  // a beam's 5 queries
}

TEST(Attention, LongSequencesSpanSeveralTiles) {
  Rng rng(25);
  expect_matches_torch({1, 2, 300, 300, 64, false, {}}, rng);
  expect_matches_torch({1, 2, 300, 300, 64, true, {}}, rng);
  expect_matches_torch({2, 1, 150, 300, 64, true, {300, 200}}, rng);
}

// The two implementations compute the same function; they agree far below the torch tolerance.
TEST(Attention, TiledEqualsNaive) {
  Rng rng(26);
  for (Case c : {Case{2, 3, 200, 333, 24, true, {333, 129}}, Case{1, 4, 65, 129, 40, false, {}}}) {
    Tensor q = randn({c.batch, c.heads, c.q_len, c.head_dim}, rng);
    Tensor k = randn({c.batch, c.heads, c.k_len, c.head_dim}, rng);
    Tensor v = randn({c.batch, c.heads, c.k_len, c.head_dim}, rng);
    Tensor dout = randn(q.shape(), rng);
    ops::AttentionMask mask{
        c.causal, c.key_lengths.empty() ? Tensor() : Tensor::from_vector(c.key_lengths, {c.batch})};
    TensorMap result[2];
    for (int i = 0; i < 2; ++i) {
      AttentionImpl impl = i == 0 ? AttentionImpl::naive : AttentionImpl::tiled;
      result[i] =
          run_qkv([&](auto& x) { return attention(x["q"], x["k"], x["v"], mask, 0.2f, impl); },
                  {{"q", q}, {"k", k}, {"v", v}}, dout);
    }
    for (auto& [name, t] : result[0])
      expect_close(result[1][name], t, 1e-5, "tiled vs naive " + name);
  }
}

TEST(Attention, ShortSequencesMatchTorch) {
  Rng rng(30);
  expect_matches_torch({4, 3, 17, 17, 16, false, {}}, rng);  // a ViT's patches and class token
  expect_matches_torch({2, 2, 12, 32, 64, true, {32, 20}}, rng);
  expect_matches_torch({2, 2, 9, 9, 32, false, {9, 1}}, rng);
}

// The loops for up to 32 keys (head dims 8 to 64) against the tiled kernel, far below the torch
// tolerance: key counts on both sides of each multiple of 8, with and without masks (a row that
// sees no key included), gradients added to what the buffers held, and dv alone.
TEST(Attention, ShortSequencesEqualTiled) {
  Rng rng(29);
  for (int64_t hd : {8, 16, 32, 64})
    for (int64_t lk : {1, 7, 8, 9, 17, 24, 25, 32, 33})
      for (int masking = 0; masking < 3; ++masking) {
        bool causal = masking == 1, padded = masking == 2;
        int64_t lq = causal ? lk : 13;
        SCOPED_TRACE("D" + std::to_string(hd) + " Lk" + std::to_string(lk) +
                     (causal   ? " causal"
                      : padded ? " padded"
                               : ""));
        Tensor q = randn({2, 2, lq, hd}, rng), k = randn({2, 2, lk, hd}, rng);
        Tensor v = randn(k.shape(), rng), dout = randn(q.shape(), rng);
        Tensor dq0 = randn(q.shape(), rng), dk0 = randn(k.shape(), rng),
               dv0 = randn(k.shape(), rng);
        ops::AttentionMask mask{
            causal,
            padded ? Tensor::from_vector(std::vector<int32_t>{int32_t(lk), int32_t(lk / 2)}, {2})
                   : Tensor()};
        TensorMap result[2];
        for (int i = 0; i < 2; ++i) {
          AttentionImpl impl = i == 0 ? AttentionImpl::naive : AttentionImpl::tiled;
          ops::AttentionSaved saved;
          Tensor out = ops::attention_forward(q, k, v, mask, 0.3f, &saved, impl);
          Tensor dq = dq0.clone(), dk = dk0.clone(), dv = dv0.clone(), none_q, none_k;
          Tensor dv_alone = dv0.clone();
          ops::attention_backward(dout, q, k, v, out, mask, 0.3f, saved, dq, dk, dv);
          ops::attention_backward(dout, q, k, v, out, mask, 0.3f, saved, none_q, none_k, dv_alone);
          result[i] = {{"out", out}, {"dq", dq}, {"dk", dk}, {"dv", dv}, {"dv alone", dv_alone}};
        }
        for (auto& [name, t] : result[0])
          expect_close(t, result[1][name], 1e-5, "naive vs tiled " + name);
      }
}

TEST(Attention, AutomaticPicksTiledForLongKeys) {
  Rng rng(27);
  for (int64_t lk : {255, 256}) {
    Tensor q = randn({1, 1, 3, 8}, rng), kv = randn({1, 1, lk, 8}, rng);
    ops::AttentionSaved saved;
    ops::attention_forward(q, kv, kv, {}, 1.f, &saved);
    EXPECT_EQ(saved.impl, lk >= 256 ? AttentionImpl::tiled : AttentionImpl::naive);
    EXPECT_EQ(saved.probs.defined(), saved.impl == AttentionImpl::naive);
    EXPECT_EQ(saved.lse.defined(), saved.impl == AttentionImpl::tiled);
  }
}

TEST(Attention, RejectsBadShapesAndLengths) {
  Tensor q = Tensor::zeros({2, 1, 3, 4}), k = Tensor::zeros({2, 1, 5, 4});
  EXPECT_THROW(ops::attention_forward(q, k, Tensor::zeros({2, 1, 5, 3}), {}, 1.f, nullptr),
               std::invalid_argument);
  EXPECT_THROW(ops::attention_forward(q.reshape({2, 3, 4}), k, k, {}, 1.f, nullptr),
               std::invalid_argument);
  ops::AttentionMask too_long{false, Tensor::from_vector(std::vector<int32_t>{5, 6}, {2})};
  EXPECT_THROW(ops::attention_forward(q, k, k, too_long, 1.f, nullptr), std::invalid_argument);
  ops::AttentionMask wrong_batch{false, Tensor::from_vector(std::vector<int32_t>{5}, {1})};
  EXPECT_THROW(ops::attention_forward(q, k, k, wrong_batch, 1.f, nullptr), std::invalid_argument);
}

TEST(Gradcheck, Attention) {
  Rng rng(28);
  ops::AttentionMask mask{true, Tensor::from_vector(std::vector<int32_t>{6, 3}, {2})};
  for (AttentionImpl impl : {AttentionImpl::naive, AttentionImpl::tiled})
    gradcheck(impl == AttentionImpl::naive ? "attention naive" : "attention tiled",
              [&](auto& v) { return attention(v[0], v[1], v[2], mask, 0.5f, impl); },
              {randn({2, 2, 4, 3}, rng), randn({2, 2, 6, 3}, rng), randn({2, 2, 6, 3}, rng)});
}

}  // namespace
}  // namespace qkv::test
