// Data layer, part 3: token-based batching. Checks the invariants on synthetic pairs (every
// pair once per epoch, the token budget, padding, truncation, determinism, exact resume) and
// one pass over the bundled dev split.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "data/batcher.h"
#include "data/corpus.h"
#include "data/tokenizer.h"
#include "support/data_files.h"
#include "tensor/rng.h"

namespace qkv::test {
namespace {

using namespace qkv::data;
using Ids = std::vector<int32_t>;

struct Pairs {
  std::vector<Ids> src, tgt;
};

// `n` pairs of random ids >= 4 with source lengths 1..max_src and target lengths 0..max_tgt.
Pairs random_pairs(int64_t n, int64_t max_src, int64_t max_tgt, uint64_t seed) {
  Rng rng(seed);
  Pairs p;
  auto sequence = [&](int64_t len) {
    Ids ids(len);
    for (auto& id : ids) id = int32_t(4 + rng.below(1000));
    return ids;
  };
  for (int64_t i = 0; i < n; ++i) {
    p.src.push_back(sequence(1 + int64_t(rng.below(max_src))));
    p.tgt.push_back(sequence(int64_t(rng.below(max_tgt + 1))));
  }
  return p;
}

BatcherOptions small_options(uint64_t seed = 3) {
  BatcherOptions o;
  o.max_tokens = 400;
  o.max_len = 64;
  o.window_batches = 5;
  o.seed = seed;
  return o;
}

std::vector<int32_t> ints(const Tensor& t) {
  const int32_t* d = t.data<int32_t>();
  return {d, d + t.numel()};
}

// Checks one batch's tensors against the (truncated) pairs they came from.
void expect_batch_matches(const Batch& b, const Pairs& p, int32_t max_len, int64_t max_tokens) {
  int64_t rows = b.size(), S = b.src.size(1), T = b.tgt_in.size(1);
  ASSERT_EQ(b.src.shape(), (Shape{rows, S}));
  ASSERT_EQ(b.tgt_in.shape(), (Shape{rows, T}));
  ASSERT_EQ(b.tgt_out.shape(), (Shape{rows, T}));
  EXPECT_LE(rows * std::max(S, T), max_tokens);
  EXPECT_LE(std::max(S, T), max_len);
  auto src = ints(b.src), tin = ints(b.tgt_in), tout = ints(b.tgt_out);
  auto src_len = ints(b.src_lengths), tgt_len = ints(b.tgt_lengths);
  int64_t longest_src = 0, longest_tgt = 0, tokens = 0;
  for (int64_t r = 0; r < rows; ++r) {
    Ids s = p.src[b.indices[r]], t = p.tgt[b.indices[r]];
    s.resize(std::min<size_t>(s.size(), max_len));
    t.resize(std::min<size_t>(t.size(), max_len - 1));
    Ids want_src = s, want_in = {Tokenizer::bos_id}, want_out = t;
    want_in.insert(want_in.end(), t.begin(), t.end());
    want_out.push_back(Tokenizer::eos_id);
    want_src.resize(S, Tokenizer::pad_id);
    want_in.resize(T, Tokenizer::pad_id);
    want_out.resize(T, Tokenizer::pad_id);
    EXPECT_EQ(Ids(src.begin() + r * S, src.begin() + (r + 1) * S), want_src);
    EXPECT_EQ(Ids(tin.begin() + r * T, tin.begin() + (r + 1) * T), want_in);
    EXPECT_EQ(Ids(tout.begin() + r * T, tout.begin() + (r + 1) * T), want_out);
    EXPECT_EQ(src_len[r], int32_t(s.size()));
    EXPECT_EQ(tgt_len[r], int32_t(t.size() + 1));
    longest_src = std::max<int64_t>(longest_src, s.size());
    longest_tgt = std::max<int64_t>(longest_tgt, t.size() + 1);
    tokens += int64_t(t.size()) + 1;
  }
  EXPECT_EQ(S, longest_src);  // no all-padding columns
  EXPECT_EQ(T, longest_tgt);
  EXPECT_EQ(b.n_tgt_tokens, tokens);
}

TEST(Batcher, EveryPairOncePerEpochWithinBudgetAndCorrectlyPadded) {
  Pairs p = random_pairs(1500, 70, 80, 1);  // some pairs exceed max_len 64
  BatcherOptions o = small_options();
  Batcher batcher(p.src, p.tgt, o);
  int64_t too_long = 0;
  for (size_t i = 0; i < p.src.size(); ++i)
    too_long += p.src[i].size() > 64 || p.tgt[i].size() > 63;
  ASSERT_GT(too_long, 0);
  EXPECT_EQ(batcher.truncated(), too_long);
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    std::vector<int64_t> seen;
    for (auto& indices : batcher.epoch_plan(epoch)) {
      Batch b = batcher.make_batch(indices);
      expect_batch_matches(b, p, o.max_len, o.max_tokens);
      seen.insert(seen.end(), indices.begin(), indices.end());
    }
    std::sort(seen.begin(), seen.end());
    ASSERT_EQ(seen.size(), p.src.size());
    for (size_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i], int64_t(i));
  }
}

TEST(Batcher, BatchesAreFullAndLengthSorted) {
  Pairs p = random_pairs(1000, 40, 40, 2);
  BatcherOptions o = small_options();
  o.shuffle = false;
  o.window_batches = 1000;  // one window: the plan is the corpus sorted by length
  Batcher batcher(p.src, p.tgt, o);
  auto plan = batcher.epoch_plan(0);
  std::vector<int64_t> order;
  for (auto& b : plan) order.insert(order.end(), b.begin(), b.end());
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return std::pair(p.src[a].size(), p.tgt[a].size()) <
           std::pair(p.src[b].size(), p.tgt[b].size());
  }));
  // Greedy filling: the next pair would have broken each batch's budget.
  for (size_t k = 0; k + 1 < plan.size(); ++k) {
    int64_t width = 0;
    for (int64_t i : plan[k])
      width = std::max<int64_t>({width, int64_t(p.src[i].size()), int64_t(p.tgt[i].size()) + 1});
    int64_t n = plan[k + 1][0];
    width = std::max<int64_t>({width, int64_t(p.src[n].size()), int64_t(p.tgt[n].size()) + 1});
    EXPECT_GT(int64_t(plan[k].size() + 1) * width, o.max_tokens);
  }
}

TEST(Batcher, DeterministicPerSeedAndDifferentPerEpoch) {
  Pairs p = random_pairs(800, 30, 30, 3);
  Batcher a(p.src, p.tgt, small_options(11)), b(p.src, p.tgt, small_options(11));
  Batcher c(p.src, p.tgt, small_options(12));
  EXPECT_EQ(a.epoch_plan(0), b.epoch_plan(0));
  EXPECT_EQ(a.epoch_plan(5), b.epoch_plan(5));
  EXPECT_NE(a.epoch_plan(0), a.epoch_plan(1));
  EXPECT_NE(a.epoch_plan(0), c.epoch_plan(0));
}

TEST(Batcher, ResumesAtTheExactPosition) {
  Pairs p = random_pairs(600, 30, 30, 4);
  BatcherOptions o = small_options();
  Batcher unbroken(p.src, p.tgt, o);
  int64_t per_epoch = unbroken.batches_in_epoch(0);
  std::vector<Batch> served;
  for (int64_t k = 0; k < 2 * per_epoch + 3; ++k) served.push_back(unbroken.next());
  EXPECT_EQ(served[per_epoch - 1].position, (BatchPosition{0, per_epoch - 1}));
  EXPECT_EQ(served[per_epoch].position, (BatchPosition{1, 0}));

  for (int64_t stop : {int64_t(0), per_epoch / 2, per_epoch, per_epoch + 1}) {
    Batcher before(p.src, p.tgt, o);
    for (int64_t k = 0; k < stop; ++k) before.next();
    BatchPosition saved = before.position();  // what a checkpoint stores
    Batcher resumed(p.src, p.tgt, o);
    resumed.seek(saved);
    for (int64_t k = stop; k < int64_t(served.size()); ++k) {
      Batch b = resumed.next();
      ASSERT_EQ(b.indices, served[k].indices) << "stopped at " << stop << ", batch " << k;
      ASSERT_EQ(ints(b.tgt_out), ints(served[k].tgt_out));
    }
  }
  expect_error<std::invalid_argument>(
      [&] {
        unbroken.seek({0, per_epoch});
      },
      {"no batch " + std::to_string(per_epoch), "epoch 0"});
  expect_error<std::invalid_argument>([&] { unbroken.seek({-1, 0}); }, {"epoch -1"});
}

TEST(Batcher, SkipsEmptySourcesAndChecksOptions) {
  Pairs p = random_pairs(50, 10, 10, 5);
  p.src[7].clear();
  Batcher batcher(p.src, p.tgt, small_options());
  EXPECT_EQ(batcher.skipped_empty(), 1);
  EXPECT_EQ(batcher.pairs(), 49);
  for (auto& b : batcher.epoch_plan(0)) EXPECT_EQ(std::count(b.begin(), b.end(), 7), 0);

  BatcherOptions o = small_options();
  o.max_tokens = 63;
  expect_error<std::invalid_argument>([&] { Batcher(p.src, p.tgt, o); },
                                      {"max_tokens (63)", "max_len (64)"});
  p.tgt.pop_back();
  expect_error<std::invalid_argument>([&] { Batcher(p.src, p.tgt, small_options()); },
                                      {"50 sources but 49 targets"});
  expect_error<std::invalid_argument>([&] { Batcher({{}}, {{5}}, small_options()); },
                                      {"no sentence pair"});
}

TEST(Batcher, SourceBatchForTranslation) {
  Batch b = make_source_batch({{5, 6, 7}, {8}, {}});
  EXPECT_EQ(b.src.shape(), (Shape{3, 3}));
  EXPECT_EQ(ints(b.src), (Ids{5, 6, 7, 8, 0, 0, 0, 0, 0}));
  EXPECT_EQ(ints(b.src_lengths), (Ids{3, 1, 0}));
  EXPECT_FALSE(b.tgt_in.defined());
  EXPECT_EQ(b.indices, (std::vector<int64_t>{0, 1, 2}));
}

TEST(Batcher, BatchesTheBundledDevSplit) {
  ParallelCorpus dev = read_corpus(QKV_SOURCE_DIR "/data/bible.es-en.dev.tsv.xz");
  TokenizerOptions t;
  t.vocab_size = 500;
  t.max_sentences = 1000;
  Tokenizer tok = Tokenizer::train_joint(dev, t);
  Pairs p{tok.encode_all(dev.src), tok.encode_all(dev.tgt)};
  BatcherOptions o;  // the defaults: 4096 tokens, max_len 256
  Batcher batcher(p.src, p.tgt, o);
  EXPECT_EQ(batcher.truncated(), 0);
  std::set<int64_t> seen;
  int64_t batches = batcher.batches_in_epoch(0);
  for (int64_t k = 0; k < batches; ++k) {
    Batch b = batcher.next();
    expect_batch_matches(b, p, o.max_len, o.max_tokens);
    seen.insert(b.indices.begin(), b.indices.end());
  }
  EXPECT_EQ(int64_t(seen.size()), dev.size());
  EXPECT_EQ(batcher.position(), (BatchPosition{1, 0}));
}

}  // namespace
}  // namespace qkv::test
