// qkv's BLEU and chrF against sacreBLEU.
//
// The expected values below were printed by
//   PYTHONPATH=<sacrebleu checkout>:<stubs> python3 tests/python/sacrebleu_expected.py expected
// with sacreBLEU 2.6.0 (github.com/mjpost/sacrebleu, commit f615c72, one README-only commit after
// the v2.6.0 tag; version.py written by hand as "2.6.0"), run from its source tree by Debian's
// Python 3.11.2, with empty stand-ins for the optional imports portalocker, colorama, tabulate and
// lxml that BLEU and chrF never use. The script runs sacrebleu's BLEU() and CHRF() with their
// defaults (corpus_score) and its Tokenizer13a on the files in tests/data/metrics, which
// `sacrebleu_expected.py data` made: hand-written English, 200 verses of the English side of
// bible.es-en.dev.tsv.xz with deterministically perturbed hypotheses (one or two references),
// 100 Spanish verses, non-ASCII text and edge cases.
// Scores must agree to 1e-9 (sacreBLEU prints 2 decimals) and the printed lines exactly.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "eval/metrics.h"
#include "eval/tokenize_13a.h"

namespace qkv::test {
namespace {

struct Tokenizer13aCase {
  const char* input;
  const char* expected;
};

struct MetricCase {
  const char* hyp_file;
  std::vector<const char*> ref_files;
  double bleu, chrf;
  const char* bleu_line;  // sacrebleu's Score.format(signature=...)
  const char* chrf_line;
};

const Tokenizer13aCase kTokenizerCases[] = {
    {"", ""},
    {" ", ""},
    {"Hello, world!", "Hello , world !"},
    {"  leading and trailing  ", "leading and trailing"},
    {"a.b,c", "a . b , c"},
    {"a.,b", "a . , b"},
    {"1.5,2", "1.5,2"},
    {"5.", "5 ."},
    {".5", ". 5"},
    {"x.", "x ."},
    {",x", ", x"},
    {"1,000,000.00", "1,000,000.00"},
    {"3-4", "3 - 4"},
    {"a-b", "a-b"},
    {"3 -4", "3 -4"},
    {"-3", "-3"},
    {"x-\ny", "xy"},
    {"line\nbreak", "line break"},
    {"<skipped>", ""},
    {"<ski<skipped>pped>", "< skipped >"},
    {"&quot;q&quot; &amp;amp; &lt;&gt; &apos;", "\" q \" & amp ; < > & apos ;"},
    {"&amp;quot;", "& quot ;"},
    {"no & entity", "no & entity"},
    {"$5 #1 @home 50% (a) [b] {c} <d> a/b a\\b a|b a~b a^b a_b a`b a=b a+b a*b a:b a;b a?b a!b",
     "$ 5 # 1 @ home 50 % ( a ) [ b ] { c } < d > a / b a \\ b a | b a ~ b a ^ b a _ b a ` b a = b "
     "a + b a * b a : b a ; b a ? b a ! b"},
    {"don't 'quoted'", "don't 'quoted'"},
    {"U.S.A.", "U . S . A ."},
    {"e.g., i.e.", "e . g . , i . e ."},
    {"...", ". . ."},
    {"1...2", "1 . . .2"},
    {"a..b", "a . . b"},
    {"2,", "2 ,"},
    {",2", ", 2"},
    {"9.-", "9 . -"},
    {"1-2-3", "1 - 2 - 3"},
    {"x\u00a0y\u3000z\u2028w", "x y z w"},
    {"Ünïcödé—dash…", "Ünïcödé—dash…"},
    {"数字3.14和1,000。", "数字3.14和1,000。"},
    {"tab\there\015cr\014ff\013vt", "tab here cr ff vt"},
    {"\034\035\036\037sep", "sep"},
    {"a\u0085b", "a b"},
    {"a\u180eb", "a\u180eb"},
    {"a\u200bb", "a\u200bb"},
    {"😀.😀,😀", "😀 . 😀 , 😀"},
};
const MetricCase kMetricCases[] = {
    {"handwritten.hyp",
     {"handwritten.ref"},
     81.63839087917911,
     84.55375339109928,
     "BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0 = 81.64 91.2/84.0/78.2/74.2 "
     "(BP = 1.000 ratio = 1.024 hyp_len = 170 ref_len = 166)",
     "chrF2|nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0 = 84.55"},
    {"bible_en.hyp",
     {"bible_en.ref"},
     23.495965727074367,
     58.3141298011332,
     "BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0 = 23.50 96.4/43.3/20.5/7.3 "
     "(BP = 0.836 ratio = 0.848 hyp_len = 4796 ref_len = 5657)",
     "chrF2|nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0 = 58.31"},
    {"bible_en.hyp",
     {"bible_en.ref", "bible_en.ref2"},
     32.85594679390397,
     58.4310179060178,
     "BLEU|nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0 = 32.86 98.6/54.0/25.3/8.7 "
     "(BP = 1.000 ratio = 1.001 hyp_len = 4796 ref_len = 4789)",
     "chrF2|nrefs:2|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0 = 58.43"},
    {"bible_es.hyp",
     {"bible_es.ref"},
     7.797699837600379,
     53.0318328599649,
     "BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0 = 7.80 94.0/30.7/6.0/0.5 (BP "
     "= 0.820 ratio = 0.834 hyp_len = 2202 ref_len = 2639)",
     "chrF2|nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0 = 53.03"},
    {"unicode.hyp",
     {"unicode.ref"},
     51.82819504614528,
     77.80050866281007,
     "BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0 = 51.83 73.8/59.6/46.3/40.0 "
     "(BP = 0.970 ratio = 0.970 hyp_len = 65 ref_len = 67)",
     "chrF2|nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0 = 77.80"},
    {"identical.hyp",
     {"identical.ref"},
     100.00000000000004,
     100.0,
     "BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0 = 100.00 "
     "100.0/100.0/100.0/100.0 (BP = 1.000 ratio = 1.000 hyp_len = 523 ref_len = 523)",
     "chrF2|nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0 = 100.00"},
    {"empty_hyps.hyp",
     {"empty_hyps.ref"},
     0.0,
     0.0,
     "BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0 = 0.00 0.0/0.0/0.0/0.0 (BP = "
     "0.000 ratio = 0.000 hyp_len = 0 ref_len = 76)",
     "chrF2|nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0 = 0.00"},
    {"short.hyp",
     {"short.ref"},
     0.0,
     80.24017467248909,
     "BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0 = 0.00 80.0/50.0/0.0/0.0 (BP "
     "= 0.819 ratio = 0.833 hyp_len = 5 ref_len = 6)",
     "chrF2|nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0 = 80.24"},
    {"empty_refs.hyp",
     {"empty_refs.ref"},
     0.0,
     0.0,
     "BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0 = 0.00 0.0/0.0/0.0/0.0 (BP = "
     "1.000 ratio = 0.000 hyp_len = 4 ref_len = 0)",
     "chrF2|nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0 = 0.00"},
    {"no_matches.hyp",
     {"no_matches.ref"},
     0.0,
     6.941102555876376,
     "BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0 = 0.00 0.0/0.0/0.0/0.0 (BP = "
     "0.670 ratio = 0.714 hyp_len = 5 ref_len = 7)",
     "chrF2|nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0 = 6.94"},
    {"exp_smoothing.hyp",
     {"exp_smoothing.ref"},
     14.696400858192616,
     36.524816336265445,
     "BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0 = 14.70 83.3/30.0/6.2/4.2 "
     "(BP = 0.920 ratio = 0.923 hyp_len = 12 ref_len = 13)",
     "chrF2|nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0 = 36.52"},
};

// The lines of a file, each the text between two '\n'.
std::vector<std::string> read_lines(const std::string& name) {
  const std::string path = std::string(QKV_SOURCE_DIR) + "/tests/data/metrics/" + name;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// "NAME|SIGNATURE = REST" -> "NAME = REST"
std::string without_signature(const std::string& line) {
  return line.substr(0, line.find('|')) + line.substr(line.find(" = "));
}

TEST(Tokenize13a, MatchesSacrebleu) {
  for (const auto& c : kTokenizerCases) EXPECT_EQ(tokenize_13a(c.input), c.expected) << c.input;
}

TEST(CorpusBleu, MatchesSacrebleu) {
  for (const MetricCase& c : kMetricCases) {
    std::vector<std::vector<std::string>> refs;
    for (const char* name : c.ref_files) refs.push_back(read_lines(name));
    const BleuResult bleu = corpus_bleu(read_lines(c.hyp_file), refs);
    EXPECT_NEAR(bleu.score, c.bleu, 1e-9) << c.hyp_file;
    EXPECT_EQ(bleu.format(true), c.bleu_line) << c.hyp_file;
    EXPECT_EQ(bleu.format(), without_signature(c.bleu_line)) << c.hyp_file;
  }
}

TEST(CorpusChrf, MatchesSacrebleu) {
  for (const MetricCase& c : kMetricCases) {
    std::vector<std::vector<std::string>> refs;
    for (const char* name : c.ref_files) refs.push_back(read_lines(name));
    const ChrfResult chrf = corpus_chrf(read_lines(c.hyp_file), refs);
    EXPECT_NEAR(chrf.score, c.chrf, 1e-9) << c.hyp_file;
    EXPECT_EQ(chrf.format(true), c.chrf_line) << c.hyp_file;
    EXPECT_EQ(chrf.format(), without_signature(c.chrf_line)) << c.hyp_file;
  }
}

TEST(CorpusBleu, ReportsCountsAndSignature) {
  const BleuResult r = corpus_bleu({"the cat sat", "a dog"}, {{"the cat sat down", "a dog"}});
  EXPECT_EQ(r.hyp_len, 5);
  EXPECT_EQ(r.ref_len, 6);
  EXPECT_EQ(r.matches, (std::array<int64_t, 4>{5, 3, 1, 0}));
  EXPECT_EQ(r.totals, (std::array<int64_t, 4>{5, 3, 1, 0}));
  EXPECT_EQ(r.signature(), "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0");
  EXPECT_EQ(corpus_bleu({"x"}, {{"x"}, {"y"}, {"z"}}).signature(),
            "nrefs:3|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0");
  EXPECT_EQ(corpus_chrf({"x"}, {{"x"}, {"y"}}).signature(),
            "nrefs:2|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0");
}

TEST(CorpusMetrics, RejectBadInput) {
  const std::vector<std::string> hyps{"a b", "c d"};
  EXPECT_THROW(corpus_bleu({}, {{}}), std::invalid_argument);
  EXPECT_THROW(corpus_bleu(hyps, {}), std::invalid_argument);
  EXPECT_THROW(corpus_chrf(hyps, {{"a b"}}), std::invalid_argument);
  EXPECT_THROW(corpus_bleu(hyps, {{"a b", "c d"}, {"a b"}}), std::invalid_argument);
  for (const char* bad :
       {"\xff", "\xc3", "\xc3(", "\xe0\x80\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80"}) {
    try {
      corpus_chrf(hyps, {{"a b", std::string("c ") + bad}});
      ADD_FAILURE() << "accepted invalid UTF-8";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("reference stream 1 line 2"), std::string::npos)
          << e.what();
    }
    EXPECT_THROW(corpus_bleu({bad}, {{"x"}}), std::invalid_argument);
  }
}

}  // namespace
}  // namespace qkv::test
