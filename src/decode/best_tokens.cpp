#include "decode/best_tokens.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "ops/cpu/vec_math.h"
#include "ops/ops.h"

namespace qkv::decode {

namespace {
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr int64_t kParallelMin = 1 << 16;  // logits below which one thread is faster

// The n best of row x [V] by logit into out [n] (logit, id), kept sorted: an entry moves in
// only when it beats the worst kept one (a later id with an equal value does not). A block whose
// largest logit does not beat the worst kept entry is skipped whole; the blocks' maxima give
// the row's, which is returned. The log-softmax keeps the order of the logits, so these are
// the n best log-probs too.
float row_best(const float* x, int64_t vocab, const int32_t* skip, size_t n_skip, int32_t eos,
               std::pair<float, int32_t>* out, int64_t n) {
  std::fill(out, out + n, std::pair<float, int32_t>(kNegInf, -1));
  float max = kNegInf;
  constexpr int64_t kBlock = 32;
  for (int64_t begin = 0; begin < vocab; begin += kBlock) {
    int64_t end = std::min(vocab, begin + kBlock);
    float block_max = ops::cpu::max_of(x + begin, end - begin, kNegInf);
    max = block_max > max ? block_max : max;
    if (n == 0 || !(block_max > out[n - 1].first)) continue;
    for (int64_t v = begin; v < end; ++v) {
      if (!(x[v] > out[n - 1].first) || v == eos ||
          std::find(skip, skip + n_skip, v) != skip + n_skip)
        continue;
      int64_t i = n - 1;
      for (; i > 0 && x[v] > out[i - 1].first; --i) out[i] = out[i - 1];
      out[i] = {x[v], int32_t(v)};
    }
  }
  return max;
}

// On cuda: the candidates chosen on the device (ops::best_tokens_rows), copied in one piece.
void best_tokens_on_device(const Tensor& logits, int64_t n, const std::vector<int32_t>& skip,
                           int32_t eos, BestTokens& out) {
  const int64_t rows = logits.size(0);
  const Tensor packed = ops::best_tokens_rows(logits, n, skip, eos).to(Device::cpu);
  const float* p = packed.data<float>();  // [rows, 2n + 1]
  for (int64_t r = 0; r < rows; ++r, p += 2 * n + 1) {
    for (int64_t i = 0; i < n; ++i) out.best[size_t(r * n + i)] = {p[i], int32_t(p[n + i])};
    out.eos_log_prob[size_t(r)] = p[2 * n];
  }
}
}  // namespace

void best_tokens(const Tensor& logits, int64_t n, const std::vector<int32_t>& skip, int32_t eos,
                 BestTokens& out) {
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  out.n = n;
  out.best.resize(size_t(rows * n));
  out.eos_log_prob.resize(size_t(rows));
  if (logits.device() == Device::cuda && n >= 1 && n <= ops::kMaxBestTokens &&
      int64_t(skip.size()) <= ops::kMaxSkippedTokens)
    return best_tokens_on_device(logits, n, skip, eos, out);
  const Tensor host = logits.to(Device::cpu);
  const float* x = host.data<float>();
#pragma omp parallel for schedule(static) if (rows * vocab > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * vocab;  // [V]
    std::pair<float, int32_t>* best = out.best.data() + r * n;
    float max = row_best(xr, vocab, skip.data(), skip.size(), eos, best, n), sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int64_t v = 0; v < vocab; ++v) sum += ops::cpu::exp_approx(xr[v] - max);
    float log_sum = std::log(sum);
    out.eos_log_prob[size_t(r)] = (xr[eos] - max) - log_sum;
    for (int64_t i = 0; i < n && best[i].second >= 0; ++i)
      best[i].first = (best[i].first - max) - log_sum;
  }
}

}  // namespace qkv::decode
