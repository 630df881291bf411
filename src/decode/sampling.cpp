#include "decode/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

#include "ops/cpu/vec_math.h"

namespace qkv::decode {

namespace {
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

std::string str(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

[[noreturn]] void bad_option(const std::string& name, const std::string& value,
                             const std::string& rule) {
  throw std::invalid_argument("sampling option " + name + " = " + value + ": " + rule);
}

// Largest logit; throws for a NaN or +inf one (a row with no usable order).
float checked_max(std::span<const float> logits) {
  if (logits.empty()) throw std::invalid_argument("sampling: empty row of logits");
  const float* x = logits.data();
  const int64_t n = int64_t(logits.size());
  int64_t unordered = 0;
#pragma omp simd reduction(+ : unordered)
  for (int64_t v = 0; v < n; ++v) unordered += !(x[v] < -kNegInf);
  if (unordered > 0) {
    int64_t v = 0;
    while (x[v] < -kNegInf) ++v;
    throw std::invalid_argument("sampling: logit of token " + std::to_string(v) + " is " +
                                str(x[v]));
  }
  return ops::cpu::max_of(x, n, kNegInf);
}

void repetition_penalty(std::span<float> logits, std::span<const int32_t> sequence,
                        const SamplingOptions& o, std::vector<int32_t>& window) {
  if (o.repetition_penalty == 1.f || o.repeat_last_n == 0) return;
  size_t n =
      o.repeat_last_n < 0 ? sequence.size() : std::min(sequence.size(), size_t(o.repeat_last_n));
  window.assign(sequence.end() - std::ptrdiff_t(n), sequence.end());
  std::sort(window.begin(), window.end());
  window.erase(std::unique(window.begin(), window.end()), window.end());
  if (!window.empty() && (window.front() < 0 || size_t(window.back()) >= logits.size())) {
    int32_t bad = window.front() < 0 ? window.front() : window.back();
    throw std::invalid_argument("sampling: token " + std::to_string(bad) +
                                " of the sequence is outside the vocabulary of " +
                                std::to_string(logits.size()));
  }
  const float penalty = o.repetition_penalty;
  for (int32_t t : window) logits[t] = logits[t] < 0 ? logits[t] * penalty : logits[t] / penalty;
}

// The k-th largest logit (0 < k < V). While k is small next to V, a min-heap of the k largest
// seen so far, whose top most logits fail to beat at one comparison; else nth_element on a copy.
float kth_largest(std::span<const float> logits, int64_t k, std::vector<float>& values) {
  const auto greater = std::greater<float>();
  if (32 * k > int64_t(logits.size())) {
    values.assign(logits.begin(), logits.end());
    std::nth_element(values.begin(), values.begin() + (k - 1), values.end(), greater);
    return values[size_t(k - 1)];
  }
  values.assign(logits.begin(), logits.begin() + k);
  std::make_heap(values.begin(), values.end(), greater);
  for (size_t v = size_t(k); v < logits.size(); ++v)
    if (logits[v] > values.front()) {
      std::pop_heap(values.begin(), values.end(), greater);
      values.back() = logits[v];
      std::push_heap(values.begin(), values.end(), greater);
    }
  return values.front();
}

void top_k(std::span<float> logits, int64_t k, std::vector<float>& values) {
  if (k == 0 || k >= int64_t(logits.size())) return;
  const float kth = kth_largest(logits, k, values);
  for (float& x : logits)
    if (x < kth) x = kNegInf;
}

// Descending order of (logit, id) with ties by descending id: the reverse of a stable ascending
// sort, the order in which top-p's cumulative sum runs.
bool before(const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
  return a.first > b.first || (a.first == b.first && a.second > b.second);
}

// With probabilities q (softmax) in ascending order and c their cumulative sum, a token goes when
// c <= 1 - p. Walking down from the top, c at a token is (Z - above) / Z, with Z the total weight
// and `above` that of the tokens before it, so only the kept head needs sorting: it is sorted in
// chunks of doubling size.
void top_p(std::span<float> logits, float p, std::vector<std::pair<float, int32_t>>& kept) {
  if (p == 1.f) return;
  const double max = checked_max(logits), limit = 1.0 - double(p);
  kept.clear();
  double total = 0;
  for (size_t v = 0; v < logits.size(); ++v)
    if (logits[v] != kNegInf) {
      kept.emplace_back(logits[v], int32_t(v));
      total += std::exp(double(logits[v]) - max);
    }
  double above = 0;
  size_t sorted = 0;
  for (size_t i = 0; i < kept.size(); ++i) {
    if (i == sorted) {
      size_t end = std::min(kept.size(), std::max<size_t>(64, 2 * sorted));
      std::nth_element(kept.begin() + std::ptrdiff_t(sorted),
                       kept.begin() + std::ptrdiff_t(end - 1), kept.end(), before);
      std::sort(kept.begin() + std::ptrdiff_t(sorted), kept.begin() + std::ptrdiff_t(end), before);
      sorted = end;
    }
    if (i > 0 && (total - above) / total <= limit) {
      for (size_t j = i; j < kept.size(); ++j) logits[size_t(kept[j].second)] = kNegInf;
      return;
    }
    above += std::exp(double(kept[i].first) - max);
  }
}

// q < min_p * max q, as exp(x - max) < min_p: the largest stays. Only logits near the bound
// log(min_p) need the exponential.
void min_p(std::span<float> logits, float min_p) {
  if (min_p == 0.f) return;
  const double max = checked_max(logits), bound = std::log(double(min_p));
  for (float& x : logits) {
    const double below_max = double(x) - max;
    if (below_max < bound - 1e-3 || (below_max <= bound + 1e-3 && std::exp(below_max) < min_p))
      x = kNegInf;
  }
}

void require_a_token(float max) {
  if (max == kNegInf) throw std::runtime_error("sampling: every token's logit is -inf");
}
}  // namespace

void SamplingOptions::check() const {
  if (!(temperature >= 0.f) || !std::isfinite(temperature))
    bad_option("temperature", str(temperature), "must be finite and >= 0 (0: greedy)");
  if (top_k < 0) bad_option("top-k", std::to_string(top_k), "must be >= 0 (0: off)");
  if (!(top_p > 0.f && top_p <= 1.f)) bad_option("top-p", str(top_p), "must be in (0, 1] (1: off)");
  if (!(min_p >= 0.f && min_p <= 1.f))
    bad_option("min-p", str(min_p), "must be in [0, 1] (0: off)");
  if (!(repetition_penalty > 0.f) || !std::isfinite(repetition_penalty))
    bad_option("repetition-penalty", str(repetition_penalty), "must be finite and > 0 (1: off)");
  if (repeat_last_n < -1)
    bad_option("repeat-last-n", std::to_string(repeat_last_n), "must be >= -1 (-1: all, 0: none)");
}

void process_logits(std::span<float> logits, std::span<const int32_t> sequence,
                    const SamplingOptions& options, SamplingBuffers& buffers) {
  options.check();
  checked_max(logits);
  repetition_penalty(logits, sequence, options, buffers.window);
  if (options.temperature == 0.f) return;
  if (options.temperature != 1.f)
    for (float& x : logits) x /= options.temperature;
  top_k(logits, options.top_k, buffers.values);
  top_p(logits, options.top_p, buffers.kept);
  min_p(logits, options.min_p);
}

void process_logits(std::span<float> logits, std::span<const int32_t> sequence,
                    const SamplingOptions& options) {
  SamplingBuffers buffers;
  process_logits(logits, sequence, options, buffers);
}

int32_t greedy_token(std::span<const float> logits) {
  const float max = checked_max(logits);
  require_a_token(max);
  return int32_t(std::find(logits.begin(), logits.end(), max) - logits.begin());
}

int32_t token_at(std::span<const float> logits, double u, std::vector<float>& weights) {
  const float max = checked_max(logits);
  require_a_token(max);
  const float* x = logits.data();
  const int64_t n = int64_t(logits.size());
  weights.resize(logits.size());
  float* w = weights.data();
  double total = 0;
  for (int64_t v = 0; v < n; ++v) {  // after the filters most logits are -inf: no exp for them
    w[v] = x[v] == kNegInf ? 0.f : ops::cpu::exp_approx(x[v] - max);
    total += double(w[v]);
  }
  const double target = u * total;
  double cumulative = 0;
  int64_t last = 0;  // the last token that can be chosen
  for (int64_t v = 0; v < n; ++v) {
    if (w[v] == 0.f) continue;
    cumulative += double(w[v]);
    if (cumulative > target) return int32_t(v);
    last = v;
  }
  return int32_t(last);  // u * total rounded up to the total
}

TokenSampler::TokenSampler(const SamplingOptions& options, uint64_t sequence_index)
    : options_(options), rng_(options.seed, sequence_index << 32) {
  options.check();
  if (sequence_index >> 32)
    throw std::invalid_argument("TokenSampler: sequence index " + std::to_string(sequence_index) +
                                " is not below 2^32");
}

int32_t TokenSampler::next(std::span<float> logits, std::span<const int32_t> sequence) {
  process_logits(logits, sequence, options_, buffers_);
  if (options_.temperature == 0.f) return greedy_token(logits);
  const uint64_t block = rng_.reserve(4);
  const uint64_t bits = (uint64_t(rng_.bits(block, 0)) << 32) | rng_.bits(block, 1);
  const double u = double(bits >> 11) * 0x1p-53;  // 53 random bits in [0, 1)
  return token_at(logits, u, buffers_.weights);
}

}  // namespace qkv::decode
