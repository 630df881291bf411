// Corpus BLEU as sacreBLEU 2.6.0 computes it (metrics/bleu.py): per-segment clipped n-gram
// statistics summed over the corpus, then smoothing, brevity penalty and the geometric mean.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string_view>
#include <unordered_map>

#include "eval/metrics.h"
#include "eval/segments.h"
#include "eval/tokenize_13a.h"
#include "eval/unicode_text.h"

namespace qkv {
namespace {

constexpr int kMaxOrder = 4;

// n-gram (n = 1..4) -> count. A key is a view into the tokenized segment spanning n tokens and
// the single spaces between them, so n-grams of different orders never collide.
using NgramCounts = std::unordered_map<std::string_view, int64_t>;

struct SegmentStats {
  int64_t hyp_len = 0, ref_len = 0;
  std::array<int64_t, kMaxOrder> matches{}, totals{};
};

// sacreBLEU's preprocessing: rstrip, then 13a tokenization. Returns tokens joined by one space.
std::string preprocess(const std::string& line, size_t segment, int ref_stream) {
  const std::u32string text = decode_segment("BLEU", line, segment, ref_stream);
  return tokenize_13a(rstrip(text));
}

std::vector<std::string_view> split_tokens(std::string_view tokenized) {
  std::vector<std::string_view> tokens;
  size_t begin = 0;
  while (begin < tokenized.size()) {
    size_t end = tokenized.find(' ', begin);
    if (end == std::string_view::npos) end = tokenized.size();
    tokens.push_back(tokenized.substr(begin, end - begin));
    begin = end + 1;
  }
  return tokens;
}

NgramCounts count_ngrams(const std::vector<std::string_view>& tokens) {
  NgramCounts counts;
  for (size_t n = 1; n <= kMaxOrder; ++n)
    for (size_t i = 0; i + n <= tokens.size(); ++i) {
      const char* begin = tokens[i].data();
      const char* end = tokens[i + n - 1].data() + tokens[i + n - 1].size();
      ++counts[std::string_view(begin, end - begin)];
    }
  return counts;
}

int order_of(std::string_view ngram) {
  return 1 + static_cast<int>(std::count(ngram.begin(), ngram.end(), ' '));
}

// The reference length closest to the hypothesis length; the shorter one on a tie.
int64_t closest_ref_len(int64_t hyp_len, const std::vector<int64_t>& ref_lens) {
  int64_t best = ref_lens.front();
  for (int64_t len : ref_lens) {
    const int64_t diff = std::llabs(hyp_len - len), best_diff = std::llabs(hyp_len - best);
    if (diff < best_diff || (diff == best_diff && len < best)) best = len;
  }
  return best;
}

SegmentStats segment_stats(const std::vector<std::string>& hyps,
                           const std::vector<std::vector<std::string>>& refs, size_t segment) {
  std::vector<std::string> ref_texts(refs.size());
  std::vector<int64_t> ref_lens(refs.size());
  NgramCounts ref_max;  // per n-gram, the largest count in any reference
  for (size_t k = 0; k < refs.size(); ++k) {
    ref_texts[k] = preprocess(refs[k][segment], segment, static_cast<int>(k));
    const std::vector<std::string_view> tokens = split_tokens(ref_texts[k]);
    ref_lens[k] = static_cast<int64_t>(tokens.size());
    for (const auto& [ngram, count] : count_ngrams(tokens)) {
      int64_t& best = ref_max[ngram];
      best = std::max(best, count);
    }
  }

  const std::string hyp_text = preprocess(hyps[segment], segment, -1);
  const std::vector<std::string_view> hyp_tokens = split_tokens(hyp_text);
  SegmentStats stats;
  stats.hyp_len = static_cast<int64_t>(hyp_tokens.size());
  stats.ref_len = closest_ref_len(stats.hyp_len, ref_lens);
  for (const auto& [ngram, count] : count_ngrams(hyp_tokens)) {
    const int n = order_of(ngram) - 1;
    stats.totals[n] += count;
    if (auto it = ref_max.find(ngram); it != ref_max.end())
      stats.matches[n] += std::min(count, it->second);
  }
  return stats;
}

// sacreBLEU's BLEU.compute_bleu with smooth_method='exp', effective_order=False; the operations
// are in the same order so the result agrees to the last bit or two.
void compute_score(BleuResult& r) {
  r.brevity_penalty = 1.0;
  if (r.hyp_len < r.ref_len)
    r.brevity_penalty =
        r.hyp_len > 0 ? std::exp(1.0 - static_cast<double>(r.ref_len) / r.hyp_len) : 0.0;
  r.ratio = r.ref_len > 0 ? static_cast<double>(r.hyp_len) / r.ref_len : 0.0;
  r.precisions.fill(0.0);
  r.score = 0.0;
  if (std::all_of(r.matches.begin(), r.matches.end(), [](int64_t m) { return m == 0; })) return;

  double smooth = 1.0;
  for (int n = 0; n < kMaxOrder; ++n) {
    if (r.totals[n] == 0) break;
    if (r.matches[n] == 0) {
      smooth *= 2;
      r.precisions[n] = 100.0 / (smooth * static_cast<double>(r.totals[n]));
    } else {
      r.precisions[n] =
          100.0 * static_cast<double>(r.matches[n]) / static_cast<double>(r.totals[n]);
    }
  }
  double log_sum = 0.0;  // a zero precision (an order with no n-grams) counts as log = -9999999999
  for (double p : r.precisions) log_sum += p == 0.0 ? -9999999999.0 : std::log(p);
  r.score = r.brevity_penalty * std::exp(log_sum / kMaxOrder);
}

}  // namespace

BleuResult corpus_bleu(const std::vector<std::string>& hyps,
                       const std::vector<std::vector<std::string>>& refs) {
  check_segments("BLEU", hyps, refs);
  BleuResult r;
  r.nrefs = static_cast<int>(refs.size());
  for (size_t i = 0; i < hyps.size(); ++i) {
    const SegmentStats s = segment_stats(hyps, refs, i);
    r.hyp_len += s.hyp_len;
    r.ref_len += s.ref_len;
    for (int n = 0; n < kMaxOrder; ++n) {
      r.matches[n] += s.matches[n];
      r.totals[n] += s.totals[n];
    }
  }
  compute_score(r);
  return r;
}

std::string BleuResult::signature() const {
  return "nrefs:" + std::to_string(nrefs) +
         "|case:mixed|eff:no|tok:13a|smooth:exp|version:" + kSacrebleuVersion;
}

std::string BleuResult::format(bool with_signature, int width) const {
  std::string name = with_signature ? "BLEU|" + signature() : "BLEU";
  return name + format_string(
                    " = %.*f %.1f/%.1f/%.1f/%.1f (BP = %.3f ratio = %.3f hyp_len = %lld "
                    "ref_len = %lld)",
                    width, score, precisions[0], precisions[1], precisions[2], precisions[3],
                    brevity_penalty, ratio, static_cast<long long>(hyp_len),
                    static_cast<long long>(ref_len));
}

}  // namespace qkv
