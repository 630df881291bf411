// Corpus chrF as sacreBLEU 2.6.0 computes it with its defaults (metrics/chrf.py: char_order 6,
// word_order 0, beta 2, whitespace=False, eps_smoothing=False).
#include <algorithm>
#include <string_view>
#include <unordered_map>

#include "eval/metrics.h"
#include "eval/segments.h"
#include "eval/unicode_text.h"

namespace qkv {
namespace {

constexpr int kCharOrder = 6;
constexpr int kBeta = 2;

// Per order: how many character n-grams the hypothesis has, the reference has, and both share.
struct OrderStats {
  int64_t hyp = 0, ref = 0, match = 0;
};
using ChrfStats = std::array<OrderStats, kCharOrder>;

// One segment's character n-grams of each order, as views into `text`.
struct CharNgrams {
  std::u32string text;  // the segment with all whitespace removed
  std::array<std::unordered_map<std::u32string_view, int64_t>, kCharOrder> counts;
};

void extract_char_ngrams(const std::u32string& line, CharNgrams& out) {
  out.text.clear();
  for (std::u32string_view word : split_words(line)) out.text.append(word);
  const std::u32string_view text = out.text;
  for (size_t n = 1; n <= kCharOrder; ++n) {
    auto& counts = out.counts[n - 1];
    counts.clear();
    for (size_t i = 0; i + n <= text.size(); ++i) ++counts[text.substr(i, n)];
  }
}

ChrfStats match_stats(const CharNgrams& hyp, const CharNgrams& ref) {
  ChrfStats stats;
  for (int n = 0; n < kCharOrder; ++n) {
    const auto& ref_counts = ref.counts[n];
    int64_t hyp_total = 0, ref_total = 0, match = 0;
    for (const auto& [ngram, count] : hyp.counts[n]) {
      hyp_total += count;
      if (auto it = ref_counts.find(ngram); it != ref_counts.end())
        match += std::min(count, it->second);
    }
    for (const auto& [ngram, count] : ref_counts) ref_total += count;
    // sacreBLEU counts no hypothesis n-grams when the reference has none of this order.
    stats[n] = {ref_counts.empty() ? 0 : hyp_total, ref_total, match};
  }
  return stats;
}

// sacreBLEU's CHRF._compute_f_score without eps smoothing (its epsilon then never reaches the
// result), operations in the same order.
double f_score(const ChrfStats& stats) {
  constexpr double factor = kBeta * kBeta;
  double avg_prec = 0.0, avg_rec = 0.0;
  int effective_order = 0;
  for (const OrderStats& s : stats) {
    if (s.hyp > 0 && s.ref > 0) {
      avg_prec += static_cast<double>(s.match) / static_cast<double>(s.hyp);
      avg_rec += static_cast<double>(s.match) / static_cast<double>(s.ref);
      ++effective_order;
    }
  }
  if (effective_order == 0) return 0.0;
  avg_prec /= effective_order;
  avg_rec /= effective_order;
  if (avg_prec + avg_rec == 0.0) return 0.0;
  double score = (1 + factor) * avg_prec * avg_rec;
  score /= (factor * avg_prec) + avg_rec;
  return 100 * score;
}

}  // namespace

ChrfResult corpus_chrf(const std::vector<std::string>& hyps,
                       const std::vector<std::vector<std::string>>& refs) {
  check_segments("chrF", hyps, refs);
  ChrfStats corpus{};
  CharNgrams hyp, ref;
  for (size_t i = 0; i < hyps.size(); ++i) {
    extract_char_ngrams(decode_segment("chrF", hyps[i], i), hyp);
    ChrfStats best{};
    double best_f = -1.0;  // the first reference wins a tie
    for (size_t k = 0; k < refs.size(); ++k) {
      extract_char_ngrams(decode_segment("chrF", refs[k][i], i, static_cast<int>(k)), ref);
      const ChrfStats stats = match_stats(hyp, ref);
      const double f = f_score(stats);
      if (f > best_f) best_f = f, best = stats;
    }
    for (int n = 0; n < kCharOrder; ++n) {
      corpus[n].hyp += best[n].hyp;
      corpus[n].ref += best[n].ref;
      corpus[n].match += best[n].match;
    }
  }
  ChrfResult r;
  r.score = f_score(corpus);
  r.nrefs = static_cast<int>(refs.size());
  return r;
}

std::string ChrfResult::signature() const {
  return "nrefs:" + std::to_string(nrefs) +
         "|case:mixed|eff:yes|nc:6|nw:0|space:no|version:" + kSacrebleuVersion;
}

std::string ChrfResult::format(bool with_signature, int width) const {
  std::string name = with_signature ? "chrF2|" + signature() : "chrF2";
  return name + format_string(" = %.*f", width, score);
}

}  // namespace qkv
