// The sampling filters and sampler of `qkv generate` (decode/sampling.h):
// - against a float64 torch reference written from Hugging Face's definitions
//   (tests/python/logits_processors_reference.py), for V = 10, 1000 and 50257 with ties and
//   very negative logits: the softmax of the processed logits within 1e-6 per token (absolute;
//   measured: at most 1.6e-7, from the filters' float32 arithmetic on logits up to 20), the same
//   removed tokens, and greedy's token;
// - the sampler's draws against the filtered distribution by a chi-square test at significance
//   1e-3, which rejects an off-by-one in the cumulative scan and a draw that skips the filters;
// - one stream per (seed, sequence index); option and input errors naming the bad value.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <tuple>

#include "decode/sampling.h"
#include "io/safetensors.h"
#include "support/data_files.h"
#include "support/python_script.h"
#include "support/torch_ref.h"

namespace qkv::test {
namespace {

using decode::SamplingOptions;
using decode::TokenSampler;
constexpr float kInf = std::numeric_limits<float>::infinity();

// softmax(x) in double; tokens at -inf get 0.
std::vector<double> softmax(std::span<const float> x) {
  double max = -kInf, total = 0;
  for (float v : x) max = std::max(max, double(v));
  std::vector<double> p(x.size());
  for (size_t i = 0; i < x.size(); ++i) total += p[i] = std::exp(double(x[i]) - max);
  for (double& v : p) v /= total;
  return p;
}

std::vector<int32_t> removed_tokens(std::span<const float> x) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i < x.size(); ++i)
    if (x[i] == -kInf) ids.push_back(int32_t(i));
  return ids;
}

template <class T>
std::vector<T> elements(const Tensor& t) {
  const T* p = t.data<T>();
  return std::vector<T>(p, p + t.numel());
}

int32_t argmax(std::span<const float> x) {
  return int32_t(std::max_element(x.begin(), x.end()) - x.begin());  // the first of ties
}

// Random logits (stddev 3) where every 7th copies an earlier one (ties), with a few very
// negative ones (-1e4, -1e30) and a masked one (-inf).
std::vector<float> random_logits(int64_t vocab, Rng& rng) {
  std::vector<float> x = randn({vocab}, rng, 3.f).to_vector();
  for (int64_t i = 7; i < vocab; i += 7) x[size_t(i)] = x[size_t(rng.below(uint64_t(i)))];
  x[size_t(vocab / 3)] = -1e4f;
  x[size_t(vocab / 2)] = -1e30f;
  x[size_t(vocab - 2)] = -kInf;
  return x;
}

// The last tokens of a sequence: the best token twice and a negative one, so that the penalty
// changes greedy's choice and a window of 3 holds a repeat.
std::vector<int32_t> random_sequence(const std::vector<float>& x, Rng& rng) {
  std::vector<int32_t> seq = elements<int32_t>(rand_ids({80}, int32_t(x.size()), rng));
  int32_t negative =
      int32_t(std::find_if(x.begin(), x.end(), [](float v) { return v < 0; }) - x.begin());
  seq.insert(seq.end(), {argmax(x), negative, argmax(x)});
  return seq;
}

struct Setting {
  std::string name;
  SamplingOptions options;
};

std::vector<Setting> settings(int64_t vocab) {
  auto with = [](auto set) {
    SamplingOptions o;
    set(o);
    return o;
  };
  auto penalty = [&](float p, int64_t last_n) {
    return with([=](SamplingOptions& o) { o.repetition_penalty = p, o.repeat_last_n = last_n; });
  };
  auto temperature = [&](float t) { return with([=](SamplingOptions& o) { o.temperature = t; }); };
  auto top_k = [&](int64_t k) { return with([=](SamplingOptions& o) { o.top_k = k; }); };
  auto top_p = [&](float p) { return with([=](SamplingOptions& o) { o.top_p = p; }); };
  auto min_p = [&](float m) { return with([=](SamplingOptions& o) { o.min_p = m; }); };
  auto all = [&](float t, float penalty, int64_t last_n, int64_t k, float p, float m) {
    return with([=](SamplingOptions& o) {
      o.temperature = t, o.repetition_penalty = penalty, o.repeat_last_n = last_n;
      o.top_k = k, o.top_p = p, o.min_p = m;
    });
  };
  return {{"off", {}},
          {"penalty_last64", penalty(1.3f, 64)},
          {"penalty_all", penalty(1.3f, -1)},
          {"penalty_last3", penalty(1.3f, 3)},
          {"penalty_last0", penalty(1.3f, 0)},
          {"penalty_below_one", penalty(0.7f, -1)},
          {"temperature_cold", temperature(0.7f)},
          {"temperature_hot", temperature(1.6f)},
          {"top_k_1", top_k(1)},
          {"top_k_3", top_k(3)},
          {"top_k_50", top_k(50)},
          {"top_k_v_minus_1", top_k(vocab - 1)},
          {"top_k_v", top_k(vocab)},
          {"top_k_above_v", top_k(vocab + 5)},
          {"top_p_0.9", top_p(0.9f)},
          {"top_p_0.5", top_p(0.5f)},
          {"top_p_0.999", top_p(0.999f)},
          {"top_p_tiny", top_p(1e-7f)},
          {"min_p_0.05", min_p(0.05f)},
          {"min_p_0.5", min_p(0.5f)},
          {"min_p_1", min_p(1.f)},
          {"all", all(0.8f, 1.2f, 16, 40, 0.9f, 0.05f)},
          {"all_hot", all(1.5f, 0.9f, -1, 500, 0.95f, 0.02f)},
          {"all_tight", all(0.6f, 1.5f, 3, 2, 0.3f, 0.9f)},
          {"greedy", all(0.f, 1.3f, 3, 5, 0.5f, 0.5f)},
          {"greedy_plain", temperature(0.f)}};
}

TEST(Sampling, FiltersMatchTheReferenceDefinitions) {
  Rng rng(7);
  // Named logits: random ones, and ten with a group of five ties that top-p 0.5 cuts through.
  std::vector<std::pair<std::string, std::vector<float>>> sets = {
      {"ties10", {0.5f, 1.f, 1.f, 1.f, 1.f, 0.5f, -3.f, -1e4f, 1.f, -kInf}}};
  for (int64_t vocab : {10, 1000, 50257})
    sets.emplace_back("v" + std::to_string(vocab), random_logits(vocab, rng));

  ScratchDir dir("sampling_reference");
  NamedTensors logits_file;
  nlohmann::json cases = nlohmann::json::array();
  struct Case {
    std::string name;
    const std::vector<float>* logits;
    std::vector<int32_t> sequence;
    SamplingOptions options;
  };
  std::vector<Case> run;
  for (const auto& [set, x] : sets) {
    int64_t vocab = int64_t(x.size());
    logits_file.emplace_back("logits." + set, Tensor::from_vector(x, {vocab}));
    std::vector<int32_t> seq = random_sequence(x, rng);
    for (const auto& [name, o] : settings(vocab)) {
      run.push_back({set + "." + name, &x, seq, o});
      cases.push_back({{"name", set + "." + name},
                       {"logits", set},
                       {"sequence", seq},
                       {"temperature", o.temperature},
                       {"top_k", o.top_k},
                       {"top_p", o.top_p},
                       {"min_p", o.min_p},
                       {"repetition_penalty", o.repetition_penalty},
                       {"repeat_last_n", o.repeat_last_n}});
    }
  }
  save_safetensors(dir.file("logits.safetensors"), logits_file);
  std::ofstream(dir.file("cases.json")) << cases.dump();
  run_python_script("logits_processors_reference.py", dir.file(""));
  std::map<std::string, Tensor> ref;
  for (auto& [name, t] : load_safetensors(dir.file("reference.safetensors"))) ref[name] = t;

  decode::SamplingBuffers buffers;  // shared by every case and vocabulary size
  for (const Case& c : run) {
    SCOPED_TRACE(c.name);
    std::vector<float> x = *c.logits;
    decode::process_logits(x, c.sequence, c.options, buffers);
    if (c.options.temperature == 0.f) {
      const int32_t want = elements<int32_t>(ref.at("greedy." + c.name))[0];
      EXPECT_EQ(decode::greedy_token(x), want);
      std::vector<float> again = *c.logits;
      EXPECT_EQ(TokenSampler(c.options, 0).next(again, c.sequence), want);
      continue;
    }
    const std::vector<float> want = ref.at("probs." + c.name).to_vector();
    const std::vector<double> got = softmax(x);
    double worst = 0;
    for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::fabs(got[i] - want[i]));
    EXPECT_LE(worst, 1e-6) << "largest difference of the filtered distribution";
    std::vector<int32_t> want_removed;
    const std::vector<uint8_t> mask = elements<uint8_t>(ref.at("removed." + c.name));
    for (size_t i = 0; i < mask.size(); ++i)
      if (mask[i]) want_removed.push_back(int32_t(i));
    EXPECT_EQ(removed_tokens(x), want_removed);
  }
  // The penalty moves greedy's choice somewhere, so the greedy cases check it.
  int moved = 0;
  for (const auto& [set, x] : sets)
    moved += elements<int32_t>(ref.at("greedy." + set + ".greedy"))[0] != argmax(x);
  EXPECT_GT(moved, 0);
}

// 40 tokens of each value 0..4: the 3rd largest is 4 (found by a heap), the 100th 2 (by
// selection on a copy); the ties with it stay.
TEST(Sampling, TopKKeepsTheTiesOfTheKth) {
  std::vector<float> x(200);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(i % 5);
  for (auto [k, kth] : std::vector<std::pair<int64_t, float>>{{3, 4.f}, {100, 2.f}}) {
    SamplingOptions o;
    o.top_k = k;
    std::vector<float> y = x;
    decode::process_logits(y, {}, o);
    for (size_t i = 0; i < x.size(); ++i)
      EXPECT_EQ(y[i], x[i] < kth ? -kInf : x[i]) << "k = " << k << ", token " << i;
  }
}

TEST(Sampling, GreedyIsTheFirstLargestLogit) {
  std::vector<float> x = {-kInf, 2.f, -1.f, 3.f, 3.f, -kInf};
  EXPECT_EQ(decode::greedy_token(x), 3);
  SamplingOptions o;
  o.temperature = 0.f, o.repetition_penalty = 2.f;  // 3 -> 1.5 for token 3 only
  std::vector<int32_t> seq = {3};
  EXPECT_EQ(TokenSampler(o, 0).next(x, seq), 4);
}

// Tokens 1, 2, 4 and 5 with a quarter each: the draw at u is the token whose quarter holds u.
TEST(Sampling, TheDrawScansTheCumulativeWeights) {
  std::vector<float> x = {-kInf, 0.f, 0.f, -kInf, 0.f, 0.f, -kInf};
  std::vector<float> weights;
  std::vector<std::pair<double, int32_t>> want = {{0.0, 1},
                                                  {0.2499, 1},
                                                  {0.25, 2},
                                                  {0.4999, 2},
                                                  {0.5, 4},
                                                  {0.75, 5},
                                                  {std::nextafter(1.0, 0.0), 5}};
  for (auto [u, token] : want) EXPECT_EQ(decode::token_at(x, u, weights), token) << "u = " << u;
}

// P(a, x), the regularized lower incomplete gamma function, by its power series
// x^a e^-x / Gamma(a + 1) * sum_n x^n / ((a + 1) ... (a + n)), which converges for every x.
double lower_gamma_regularized(double a, double x) {
  if (x <= 0) return 0;
  double term = 1, sum = 1;
  for (int n = 1; n < 100000 && term > 1e-17 * sum; ++n) sum += term *= x / (a + n);
  return std::exp(a * std::log(x) - x - std::lgamma(a + 1)) * sum;
}

// The chi-square statistic that a distribution with df degrees of freedom exceeds with
// probability alpha: P(df / 2, c / 2) = 1 - alpha, by bisection.
double chi_square_critical(int df, double alpha) {
  double low = 0, high = 1000;
  for (int i = 0; i < 200; ++i) {
    double mid = (low + high) / 2;
    (lower_gamma_regularized(df / 2.0, mid / 2) < 1 - alpha ? low : high) = mid;
  }
  return low;
}

TEST(Sampling, ChiSquareCriticalValuesMatchTheTables) {
  // {df, alpha, the tables' value}
  for (auto [df, alpha, want] : std::vector<std::tuple<int, double, double>>{
           {1, 0.05, 3.841459}, {10, 0.01, 23.209251}, {7, 1e-3, 24.321886}, {19, 1e-3, 43.820196}})
    EXPECT_NEAR(chi_square_critical(df, alpha), want, 1e-5) << df << " " << alpha;
}

// Pearson's statistic of `counts` against `probs`; +inf when a token of probability 0 was drawn.
// Expects every drawn category to have an expected count of at least 5.
double chi_square(const std::vector<int64_t>& counts, const std::vector<double>& probs,
                  int64_t draws, int& df) {
  double stat = 0;
  df = -1;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] == 0) {
      if (counts[i] > 0) return kInf;
      continue;
    }
    const double expected = probs[i] * double(draws);
    EXPECT_GE(expected, 5) << "token " << i << ": too rare for the chi-square test";
    stat += (double(counts[i]) - expected) * (double(counts[i]) - expected) / expected;
    ++df;
  }
  return stat;
}

constexpr int64_t kDraws = 100000;
constexpr double kAlpha = 1e-3;

struct SmallCase {
  std::vector<float> logits;
  std::vector<int32_t> sequence;
  SamplingOptions options;
};

// V = 8 without filters, and V = 20 through all of them (min-p keeps every token drawn often
// enough for the test).
std::vector<SmallCase> small_cases() {
  Rng rng(11);
  SmallCase plain{randn({8}, rng).to_vector(), {}, {}};
  SmallCase filtered{randn({20}, rng, 2.f).to_vector(), {0, 3, 3, 7, 12}, {}};
  filtered.options.temperature = 0.9f, filtered.options.repetition_penalty = 1.4f;
  filtered.options.repeat_last_n = 4, filtered.options.top_k = 15, filtered.options.top_p = 0.97f;
  filtered.options.min_p = 0.02f;
  return {plain, filtered};
}

std::vector<double> filtered_probs(const SmallCase& c) {
  std::vector<float> x = c.logits;
  decode::process_logits(x, c.sequence, c.options);
  return softmax(x);
}

TEST(Sampling, DrawsFollowTheFilteredDistribution) {
  for (const SmallCase& c : small_cases()) {
    std::vector<double> probs = filtered_probs(c);
    TokenSampler sampler(c.options, 0);
    std::vector<int64_t> counts(c.logits.size(), 0);
    for (int64_t i = 0; i < kDraws; ++i) {
      std::vector<float> x = c.logits;
      ++counts[size_t(sampler.next(x, c.sequence))];
    }
    int df = 0;
    double stat = chi_square(counts, probs, kDraws, df);
    EXPECT_LT(stat, chi_square_critical(df, kAlpha)) << "V = " << c.logits.size();
  }
}

// The same test rejects wrong samplers: a scan that compares before adding the token's weight
// (one token late), and a draw from the logits before the filters.
TEST(Sampling, TheChiSquareTestRejectsWrongSamplers) {
  auto one_late = [](std::span<const float> x, double u) {
    std::vector<double> p = softmax(x);
    double cumulative = 0;
    for (size_t v = 0; v < p.size(); ++v) {
      if (cumulative > u) return int32_t(v);
      cumulative += p[v];
    }
    return int32_t(p.size() - 1);
  };
  for (const SmallCase& c : small_cases()) {
    std::vector<double> probs = filtered_probs(c);
    std::vector<float> processed = c.logits;
    decode::process_logits(processed, c.sequence, c.options);
    Rng rng(5);
    Tensor u = Tensor::zeros({kDraws});
    rng.uniform(u);
    std::vector<int64_t> late(c.logits.size(), 0), unfiltered(c.logits.size(), 0);
    std::vector<float> weights;
    for (float ui : u.to_vector()) {
      ++late[size_t(one_late(processed, ui))];
      ++unfiltered[size_t(decode::token_at(c.logits, ui, weights))];
    }
    int df = 0;
    EXPECT_GT(chi_square(late, probs, kDraws, df), chi_square_critical(df, kAlpha));
    if (c.options.top_k > 0) {
      EXPECT_GT(chi_square(unfiltered, probs, kDraws, df), chi_square_critical(df, kAlpha));
    }
  }
}

std::vector<int32_t> draws(uint64_t seed, uint64_t index, const std::vector<float>& logits) {
  SamplingOptions o;
  o.seed = seed;
  TokenSampler sampler(o, index);
  std::vector<int32_t> tokens;
  for (int i = 0; i < 100; ++i) {
    std::vector<float> x = logits;
    tokens.push_back(sampler.next(x, tokens));
  }
  return tokens;
}

TEST(Sampling, OneStreamPerSeedAndSequenceIndex) {
  Rng rng(3);
  std::vector<float> logits = randn({1000}, rng).to_vector();
  const std::vector<int32_t> first = draws(42, 0, logits);
  EXPECT_EQ(draws(42, 0, logits), first);
  EXPECT_NE(draws(42, 1, logits), first);
  EXPECT_NE(draws(43, 0, logits), first);
  // Sequence 2's tokens are the same whichever samplers draw beside it.
  SamplingOptions o;
  o.seed = 42;
  std::vector<TokenSampler> batch;
  for (uint64_t s = 0; s < 4; ++s) batch.emplace_back(o, s);
  std::vector<int32_t> second;
  for (int i = 0; i < 100; ++i)
    for (uint64_t s = 0; s < 4; ++s) {
      std::vector<float> x = logits;
      int32_t token = batch[s].next(x, {});
      if (s == 2) second.push_back(token);
    }
  SamplingOptions alone = o;
  TokenSampler only(alone, 2);
  for (int i = 0; i < 100; ++i) {
    std::vector<float> x = logits;
    EXPECT_EQ(only.next(x, {}), second[size_t(i)]) << "draw " << i;
  }
}

TEST(Sampling, CheckNamesEachBadOption) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<std::tuple<std::function<void(SamplingOptions&)>, std::string, std::string>> bad = {
      {[](auto& o) { o.temperature = -0.5f; }, "temperature", "-0.5"},
      {[&](auto& o) { o.temperature = nan; }, "temperature", "nan"},
      {[](auto& o) { o.temperature = kInf; }, "temperature", "inf"},
      {[](auto& o) { o.top_p = 0.f; }, "top-p", "0"},
      {[](auto& o) { o.top_p = 1.5f; }, "top-p", "1.5"},
      {[](auto& o) { o.min_p = -0.25f; }, "min-p", "-0.25"},
      {[](auto& o) { o.min_p = 2.f; }, "min-p", "2"},
      {[](auto& o) { o.top_k = -1; }, "top-k", "-1"},
      {[](auto& o) { o.repetition_penalty = 0.f; }, "repetition-penalty", "0"},
      {[](auto& o) { o.repetition_penalty = -2.f; }, "repetition-penalty", "-2"},
      {[](auto& o) { o.repeat_last_n = -2; }, "repeat-last-n", "-2"}};
  for (auto& [set, name, value] : bad) {
    SamplingOptions o;
    set(o);
    expect_error<std::invalid_argument>([&] { o.check(); }, {name, "= " + value});
    expect_error<std::invalid_argument>([&] { TokenSampler(o, 0); }, {name, "= " + value});
  }
  SamplingOptions edges;  // the ends of each range are allowed
  edges.temperature = 0.f, edges.top_p = 1.f, edges.min_p = 1.f, edges.repeat_last_n = -1;
  EXPECT_NO_THROW(edges.check());
}

TEST(Sampling, RejectsBadLogitsAndTokens) {
  SamplingOptions o;
  o.repetition_penalty = 1.1f;
  std::vector<float> x = {0.f, 1.f, std::numeric_limits<float>::quiet_NaN(), 2.f};
  expect_error<std::invalid_argument>([&] { decode::process_logits(x, {}, o); },
                                      {"token 2", "nan"});
  x[2] = kInf;
  expect_error<std::invalid_argument>([&] { decode::process_logits(x, {}, o); },
                                      {"token 2", "inf"});
  x[2] = 0.f;
  for (int32_t token : {4, -1}) {
    std::vector<int32_t> seq = {1, token};
    expect_error<std::invalid_argument>([&] { decode::process_logits(x, seq, o); },
                                        {"token " + std::to_string(token), "vocabulary of 4"});
  }
  expect_error<std::invalid_argument>([&] { decode::process_logits({}, {}, o); }, {"empty"});
  std::vector<float> masked(5, -kInf);
  std::vector<float> weights;
  expect_error<std::runtime_error>([&] { decode::greedy_token(masked); }, {"every token"});
  expect_error<std::runtime_error>([&] { decode::token_at(masked, 0.5, weights); },
                                   {"every token"});
  expect_error<std::invalid_argument>([&] { TokenSampler(o, uint64_t(1) << 32); },
                                      {"sequence index 4294967296"});
}

}  // namespace
}  // namespace qkv::test
