#include "data/lm_windows.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "tensor/rng.h"

namespace qkv::data {
namespace {

void check_sizes(const char* who, int64_t context, int64_t batch_size) {
  if (context < 1)
    throw std::invalid_argument(std::string(who) + ": context must be at least 1, got " +
                                std::to_string(context));
  if (batch_size < 1)
    throw std::invalid_argument(std::string(who) + ": batch size must be at least 1, got " +
                                std::to_string(batch_size));
}

// inputs [rows, L] and targets [rows, L] of windows starting at `starts`: inputs from
// stream[s, s + L), targets from stream[s + 1, s + L + 1), cut at the end of the stream
// (inputs padded with 0, targets with kIgnoreTarget).
LmBatch make_windows(const std::vector<int32_t>& stream, const std::vector<int64_t>& starts,
                     int64_t context) {
  const int64_t rows = int64_t(starts.size()), n = int64_t(stream.size());
  std::vector<int32_t> inputs(size_t(rows * context), 0);
  std::vector<int32_t> targets(size_t(rows * context), kIgnoreTarget);
  LmBatch batch;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t s = starts[size_t(r)], scored = std::min(context, n - 1 - s);
    std::copy_n(stream.begin() + s, scored, inputs.begin() + r * context);
    std::copy_n(stream.begin() + s + 1, scored, targets.begin() + r * context);
    batch.scored_tokens += scored;
  }
  batch.inputs = Tensor::from_vector(inputs, {rows, context});    // [B, L]
  batch.targets = Tensor::from_vector(targets, {rows, context});  // [B, L]
  return batch;
}

void check_index(int64_t index) {
  if (index < 0)
    throw std::invalid_argument("window sampler: no batch " + std::to_string(index) +
                                "; batch indices start at 0");
}

}  // namespace

WindowSampler::WindowSampler(std::vector<int32_t> stream, int64_t context, int64_t batch_size,
                             uint64_t seed)
    : stream_(std::move(stream)), context_(context), batch_size_(batch_size), seed_(seed) {
  check_sizes("window sampler", context, batch_size);
  if (tokens() <= context)
    throw std::invalid_argument("window sampler: the data has " + std::to_string(tokens()) +
                                " tokens, shorter than one window of context " +
                                std::to_string(context) + " (" + std::to_string(context + 1) +
                                " tokens)");
}

std::vector<int64_t> WindowSampler::starts(int64_t index) const {
  check_index(index);
  const Rng rng(seed_);
  const uint64_t choices = uint64_t(tokens() - context_);  // starts 0 .. N - L - 1
  std::vector<int64_t> out(static_cast<size_t>(batch_size_));
  for (int64_t b = 0; b < batch_size_; ++b) {
    auto words = rng.block(uint64_t(index) * uint64_t(batch_size_) + uint64_t(b));
    uint64_t bits = (uint64_t(words[0]) << 32) | words[1];
    out[size_t(b)] = int64_t(bits % choices);
  }
  return out;
}

LmBatch WindowSampler::batch(int64_t index) const {
  return make_windows(stream_, starts(index), context_);
}

void WindowSampler::seek(int64_t index) {
  check_index(index);
  position_ = index;
}

double EvalWindows::bits_per_character(double summed_loss) const {
  return summed_loss / std::log(2.0) / double(characters);
}

EvalWindows eval_windows(const TokenStream& stream, int64_t context, int64_t batch_size) {
  check_sizes("eval windows", context, batch_size);
  const int64_t n = int64_t(stream.tokens.size());
  if (n < 2)
    throw std::invalid_argument("eval windows: the data has " + std::to_string(n) +
                                " tokens; scoring needs at least 2");
  EvalWindows eval;
  eval.characters = stream.characters;
  std::vector<int64_t> starts;  // window j starts at j * L; the last one has a token to score
  for (int64_t s = 0; s < n - 1; s += context) starts.push_back(s);
  for (size_t first = 0; first < starts.size(); first += size_t(batch_size)) {
    size_t last = std::min(starts.size(), first + size_t(batch_size));
    std::vector<int64_t> rows(starts.begin() + int64_t(first), starts.begin() + int64_t(last));
    eval.batches.push_back(make_windows(stream.tokens, rows, context));
    eval.scored_tokens += eval.batches.back().scored_tokens;
  }
  return eval;
}

}  // namespace qkv::data
