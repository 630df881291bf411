// Corpus-level BLEU and chrF computed exactly as sacreBLEU 2.6.0 computes them with its defaults,
// so that scores printed by qkv can be compared with published sacreBLEU numbers.
//
// Inputs are UTF-8 lines: hyps[i] is the system output for segment i and refs[k][i] the k-th
// reference for it (one or more reference streams, each as long as hyps). Text is handled as
// Python handles a str: code points, Python's notion of whitespace. Errors (no segments, streams
// of different lengths, invalid UTF-8) throw std::invalid_argument naming the line.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace qkv {

// The sacreBLEU release whose numbers these functions reproduce; it ends every signature.
inline constexpr const char* kSacrebleuVersion = "2.6.0";

// BLEU with sacreBLEU's defaults: 13a tokenization (see tokenize_13a.h) after stripping trailing
// whitespace, case-sensitive, n-grams of order 1..4 clipped by the largest count in any reference,
// per-segment reference length = the closest reference length (the shorter one on a tie),
// 'exp' smoothing (the k-th order with no match counts as 1/2^k matches), brevity penalty
// exp(1 - ref_len / hyp_len) when hyp_len < ref_len.
struct BleuResult {
  double score = 0;                    // 0..100
  std::array<double, 4> precisions{};  // per n-gram order, percent, after smoothing
  std::array<int64_t, 4> matches{};    // clipped matching n-grams, summed over segments
  std::array<int64_t, 4> totals{};     // hypothesis n-grams, summed over segments
  double brevity_penalty = 0;
  double ratio = 0;                  // hyp_len / ref_len, 0 when ref_len is 0
  int64_t hyp_len = 0, ref_len = 0;  // tokens
  int nrefs = 1;

  // "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
  std::string signature() const;
  // "BLEU = 25.90 60.1/32.5/19.4/12.1 (BP = 1.000 ratio = 1.012 hyp_len = 9 ref_len = 9)", or
  // with the signature "BLEU|nrefs:1|...|version:2.6.0 = 25.90 60.1/..." as `sacrebleu -f text`
  // prints it. width: decimals of the score (sacrebleu's --width).
  std::string format(bool with_signature = false, int width = 2) const;
};

BleuResult corpus_bleu(const std::vector<std::string>& hyps,
                       const std::vector<std::vector<std::string>>& refs);

// chrF2 with sacreBLEU's defaults: character n-grams of order 1..6 after deleting all
// whitespace, no word n-grams, beta 2, case-sensitive. Per segment the reference with the best
// segment-level chrF is chosen; its (hypothesis, reference, matching) n-gram counts per order are
// summed over the corpus. Precision and recall are averaged over the orders where both the
// hypothesis and reference counts are nonzero ('eff:yes'), then combined into the F-beta score.
struct ChrfResult {
  double score = 0;  // 0..100
  int nrefs = 1;

  // "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0"
  std::string signature() const;
  // "chrF2 = 55.12", or with the signature "chrF2|nrefs:1|...|version:2.6.0 = 55.12".
  std::string format(bool with_signature = false, int width = 2) const;
};

ChrfResult corpus_chrf(const std::vector<std::string>& hyps,
                       const std::vector<std::vector<std::string>>& refs);

}  // namespace qkv
