// Data layer, part 1: UTF-8 checks, the line reader (plain, .xz, empty lines) and the corpus
// readers (TSV and parallel files) with every error a user can cause. Tokenizer and batcher
// tests are in test_data_tokenizer.cpp and test_data_batcher.cpp.
#include <gtest/gtest.h>

#include "data/corpus.h"
#include "data/line_reader.h"
#include "data/utf8.h"
#include "support/data_files.h"

namespace qkv::test {
namespace {

using namespace qkv::data;

const std::string kReplacement = "\xEF\xBF\xBD";  // U+FFFD

TEST(Utf8, AcceptsWellFormedText) {
  for (std::string s :
       {"", "abc", "año ¿qué? “quote” — ok", "\xF0\x9F\x98\x80", "\xF4\x8F\xBF\xBF"}) {
    EXPECT_TRUE(is_valid_utf8(s)) << s;
    EXPECT_EQ(sanitize_utf8(s), s);
  }
}

TEST(Utf8, FindsAndReplacesEachBadByte) {
  struct Case {
    std::string text;
    size_t first_bad;
    std::string sanitized;
  };
  const std::string r = kReplacement;
  std::vector<Case> cases = {
      {"a\xFF"
       "b",
       1, "a" + r + "b"},                                  // never valid
      {"\xC0\xAF", 0, r + r},                              // overlong '/'
      {"x\xE0\x80\xAF", 1, "x" + r + r + r},               // overlong three-byte form
      {"\xED\xA0\x80", 0, r + r + r},                      // surrogate U+D800
      {"\xF4\x90\x80\x80", 0, r + r + r + r},              // above U+10FFFF
      {"ok\xE2\x82", 2, "ok" + r + r},                     // truncated euro sign
      {"\x80z", 0, r + "z"},                               // lone continuation byte
      {"\xE2\x82\xAC\xE2(", 3, "\xE2\x82\xAC" + r + "("},  // bad continuation
  };
  for (auto& c : cases) {
    EXPECT_EQ(find_invalid_utf8(c.text), c.first_bad) << c.sanitized;
    EXPECT_EQ(sanitize_utf8(c.text), c.sanitized);
    EXPECT_TRUE(is_valid_utf8(sanitize_utf8(c.text)));
  }
}

TEST(LineReader, ReadsPlainAndXzKeepingEmptyLines) {
  ScratchDir dir("line_reader");
  const std::string text = "first\r\n\nthird line\n\nlast without newline";
  const std::vector<std::string> expected = {"first", "", "third line", "", "last without newline"};
  for (std::string name : {"in.txt", "in.txt.xz"}) {
    LineReader reader(write_text(dir.file(name), text));
    std::vector<std::string> lines;
    std::string line;
    while (reader.next(line)) {
      lines.push_back(line);
      EXPECT_EQ(reader.line_number(), int64_t(lines.size()));
    }
    EXPECT_EQ(lines, expected) << name;
    EXPECT_FALSE(reader.next(line));
  }
}

TEST(LineReader, HandlesEmptyFilesAndLongLines) {
  ScratchDir dir("line_reader_edges");
  std::string empty;
  EXPECT_FALSE(LineReader(write_text(dir.file("empty.txt"), "")).next(empty));
  std::string long_line(200000, 'x');  // longer than the read buffer
  LineReader reader(write_text(dir.file("long.txt.xz"), "a\n" + long_line + "\nb\n"));
  std::string line;
  ASSERT_TRUE(reader.next(line) && reader.next(line));
  EXPECT_EQ(line, long_line);
  ASSERT_TRUE(reader.next(line));
  EXPECT_EQ(line, "b");
  EXPECT_FALSE(reader.next(line));
}

TEST(LineReader, InputLinesAreSanitized) {
  ScratchDir dir("input_lines");
  auto lines = read_input_lines(write_text(dir.file("in.es"), "hola\n\nmal\xFF\n"));
  EXPECT_EQ(lines, (std::vector<std::string>{"hola", "", "mal" + kReplacement}));
}

TEST(Corpus, ReadsTsvPlainAndXz) {
  ScratchDir dir("tsv");
  const std::string text = "Gen 1:1\tEn el principio\tIn the beginning\nJohn 3:16\t¿Porque?\tFor\n";
  for (std::string name : {"c.tsv", "c.tsv.xz"}) {
    ParallelCorpus c = read_corpus(write_text(dir.file(name), text));
    EXPECT_EQ(c.size(), 2);
    EXPECT_EQ(c.src, (std::vector<std::string>{"En el principio", "¿Porque?"}));
    EXPECT_EQ(c.tgt, (std::vector<std::string>{"In the beginning", "For"}));
    EXPECT_EQ(c.refs, (std::vector<std::string>{"Gen 1:1", "John 3:16"}));
    EXPECT_EQ(c.skipped_empty, 0);
  }
}

TEST(Corpus, SkipsAndCountsEmptyPairs) {
  ScratchDir dir("tsv_empty");
  ParallelCorpus tsv = read_tsv(
      write_text(dir.file("c.tsv"), "a\tuno\tone\n\n  \nb\t \ttwo\nc\ttres\t\nd\tcuatro\tfour\n"));
  EXPECT_EQ(tsv.src, (std::vector<std::string>{"uno", "cuatro"}));
  EXPECT_EQ(tsv.refs, (std::vector<std::string>{"a", "d"}));
  EXPECT_EQ(tsv.skipped_empty, 4);

  ParallelCorpus par = read_parallel(write_text(dir.file("p.es"), "uno\n\ndos\ntres\n"),
                                     write_text(dir.file("p.en"), "one\ntwo\n\nthree\n"));
  EXPECT_EQ(par.src, (std::vector<std::string>{"uno", "tres"}));
  EXPECT_EQ(par.tgt, (std::vector<std::string>{"one", "three"}));
  EXPECT_EQ(par.skipped_empty, 2);
}

TEST(Corpus, ReadsParallelFilesMixingPlainAndXz) {
  ScratchDir dir("parallel");
  std::string es = write_text(dir.file("train.es.xz"), "hola\nadiós\n");
  std::string en = write_text(dir.file("train.en"), "hello\ngoodbye");
  ParallelCorpus c = read_corpus(es + "," + en);
  EXPECT_EQ(c.src, (std::vector<std::string>{"hola", "adiós"}));
  EXPECT_EQ(c.tgt, (std::vector<std::string>{"hello", "goodbye"}));
  EXPECT_TRUE(c.refs.empty());
}

TEST(Corpus, ReadsTheBundledSplits) {
  for (auto [split, pairs] : {std::pair{"train", 28862}, {"dev", 1000}, {"test", 1000}}) {
    ParallelCorpus c =
        read_corpus(std::string(QKV_SOURCE_DIR) + "/data/bible.es-en." + split + ".tsv.xz");
    EXPECT_EQ(c.size(), pairs) << split;
    EXPECT_EQ(c.skipped_empty, 0) << split;
    EXPECT_EQ(c.refs.size(), c.src.size());
  }
}

TEST(CorpusErrors, MissingFileIsNamed) {
  ScratchDir dir("missing");
  std::string missing = dir.file("nope.tsv");
  expect_error<std::runtime_error>([&] { read_corpus(missing); }, {missing, "cannot open"});
  expect_error<std::runtime_error>([&] { read_corpus(missing + ".xz"); }, {missing + ".xz"});
  std::string es = write_text(dir.file("a.es"), "hola\n");
  expect_error<std::runtime_error>([&] { read_corpus(es + "," + missing); }, {missing});
  expect_error<std::runtime_error>([&] { LineReader reader(missing); }, {missing});
}

TEST(CorpusErrors, InvalidXzIsReported) {
  ScratchDir dir("bad_xz");
  for (std::string plain : {"a\tb\tc\n", "Gen 1:1\tEn el principio\tIn the beginning\n"}) {
    std::string not_xz = write_bytes(dir.file("plain.tsv.xz"), plain);
    expect_error<std::runtime_error>([&] { read_tsv(not_xz); },
                                     {not_xz, "invalid .xz file", "not in .xz format"});
  }
  std::string whole = xz_compress("a\tuno\tone\n");
  std::string truncated = write_bytes(dir.file("cut.tsv.xz"), whole.substr(0, 20));
  expect_error<std::runtime_error>([&] { read_tsv(truncated); }, {truncated, "invalid .xz file"});
  std::string corrupt = whole;
  corrupt[corrupt.size() / 2] ^= 0x55;
  std::string corrupted = write_bytes(dir.file("bad.tsv.xz"), corrupt);
  expect_error<std::runtime_error>([&] { read_tsv(corrupted); }, {corrupted, "invalid .xz file"});
  std::string empty = write_bytes(dir.file("empty.tsv.xz"), "");
  expect_error<std::runtime_error>([&] { read_tsv(empty); }, {empty, "invalid .xz file"});
}

TEST(CorpusErrors, TsvLineWithoutThreeFields) {
  ScratchDir dir("tsv_fields");
  std::string two = write_text(dir.file("two.tsv"), "a\tuno\tone\nb\tdos\n");
  expect_error<std::runtime_error>([&] { read_tsv(two); },
                                   {two + ":2:", "expected 3 tab-separated fields", "found 2"});
  std::string four = write_text(dir.file("four.tsv.xz"), "a\tuno\tone\textra\n");
  expect_error<std::runtime_error>([&] { read_tsv(four); }, {four + ":1:", "found 4"});
  std::string one = write_text(dir.file("one.tsv"), "\n\njust text\n");
  expect_error<std::runtime_error>([&] { read_tsv(one); }, {one + ":3:", "found 1"});
}

TEST(CorpusErrors, ParallelFilesOfDifferentLengths) {
  ScratchDir dir("parallel_lengths");
  std::string es = write_text(dir.file("a.es"), "uno\ndos\ntres\n");
  std::string en = write_text(dir.file("a.en.xz"), "one\ntwo\n");
  expect_error<std::runtime_error>([&] { read_parallel(es, en); },
                                   {es + " has 3 lines", en + " has 2 lines"});
  expect_error<std::runtime_error>([&] { read_parallel(en, es); },
                                   {en + " has 2 lines", es + " has 3 lines"});
}

TEST(CorpusErrors, InvalidUtf8InTrainingData) {
  ScratchDir dir("bad_utf8");
  std::string tsv = write_text(dir.file("c.tsv.xz"), "a\tuno\tone\nb\tdos\xC3(\ttwo\n");
  expect_error<std::runtime_error>([&] { read_tsv(tsv); }, {tsv + ":2:", "invalid UTF-8"});
  std::string es = write_text(dir.file("p.es"), "uno\ndos\n");
  std::string en = write_text(dir.file("p.en"), "one\n\xFFtwo\n");
  expect_error<std::runtime_error>([&] { read_parallel(es, en); }, {en + ":2:", "invalid UTF-8"});
}

TEST(CorpusErrors, MalformedSpec) {
  for (std::string spec : {"", "a.es,", ",a.en", "a,b,c"})
    expect_error<std::invalid_argument>([&] { read_corpus(spec); }, {"corpus spec"});
}

}  // namespace
}  // namespace qkv::test
