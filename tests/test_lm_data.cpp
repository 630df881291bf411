// Language-model data: documents from plain, .xz and TSV files (and every error a user can
// cause), the token stream built from them, random training windows and evaluation windows.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "data/lm_text.h"
#include "data/lm_windows.h"
#include "support/data_files.h"
#include "tensor/threads.h"

namespace qkv::test {
namespace {

using namespace qkv::data;
using Ids = std::vector<int32_t>;

// One id per byte (byte + 10), so ids 0..9 stay free for specials.
Ids byte_ids(std::string_view text) {
  Ids ids;
  for (char c : text) ids.push_back(int32_t(uint8_t(c)) + 10);
  return ids;
}

Ids values(const Tensor& t) {
  return Ids(t.data<int32_t>(), t.data<int32_t>() + t.numel());
}

// Row r of an i32 [rows, L] tensor.
Ids row(const Tensor& t, int64_t r) {
  const int32_t* p = t.data<int32_t>() + r * t.size(1);
  return Ids(p, p + t.size(1));
}

// 0, 1, ..., n - 1: a window's tokens then tell where it starts.
Ids positions(int64_t n) {
  Ids ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ids[size_t(i)] = int32_t(i);
  return ids;
}

DocumentOptions column(int32_t text_column) {
  DocumentOptions o;
  o.text_column = text_column;
  return o;
}

DocumentOptions separated(const std::string& separator) {
  DocumentOptions o;
  o.separator = separator;
  return o;
}

TEST(LmDocuments, OneDocumentPerLinePlainAndXz) {
  ScratchDir dir("lm_lines");
  const std::string text = "first\r\n\nsecond\tline ñ\n  \nlast without newline";
  for (std::string name : {"t.txt", "t.txt.xz"}) {
    DocumentCorpus c = read_documents(write_text(dir.file(name), text), {});
    EXPECT_EQ(c.documents,
              (std::vector<std::string>{"first", "second\tline ñ", "last without newline"}))
        << name;
    EXPECT_EQ(c.skipped_empty, 2) << name;
  }
}

TEST(LmDocuments, SplitsOnASeparatorKeepingEverythingElse) {
  ScratchDir dir("lm_separator");
  for (std::string name : {"s.txt", "s.txt.xz"}) {
    DocumentCorpus paragraphs = read_documents(
        write_text(dir.file(name), "a b\nc\n\n\nd\n\n\n\n\n\ne\n"), separated("\n\n"));
    EXPECT_EQ(paragraphs.documents, (std::vector<std::string>{"a b\nc", "\nd", "e\n"})) << name;
    EXPECT_EQ(paragraphs.skipped_empty, 2) << name;

    DocumentCorpus gpt = read_documents(
        write_text(dir.file(name), "<|endoftext|>one\n<|endoftext|> two<|endoftext|>\n"),
        separated("<|endoftext|>"));
    EXPECT_EQ(gpt.documents, (std::vector<std::string>{"one\n", " two"})) << name;
    EXPECT_EQ(gpt.skipped_empty, 2) << name;  // before the first separator and "\n" at the end
  }
}

TEST(LmDocuments, ReadsATsvColumn) {
  ScratchDir dir("lm_tsv");
  std::string tsv = write_text(dir.file("c.tsv.xz"), "r1\tuno\tone\n\nr2\t\ttwo\nr3\ttres\t\n");
  DocumentCorpus second = read_documents(tsv, column(2));
  EXPECT_EQ(second.documents, (std::vector<std::string>{"uno", "tres"}));
  EXPECT_EQ(second.skipped_empty, 2);
  DocumentCorpus third = read_documents(tsv, column(3));
  EXPECT_EQ(third.documents, (std::vector<std::string>{"one", "two"}));
  EXPECT_EQ(third.skipped_empty, 2);
  DocumentCorpus whole = read_documents(tsv, {});
  EXPECT_EQ(whole.documents[1], "r2\t\ttwo");
}

TEST(LmDocuments, ReadsEnglishFromTheBundledCorpus) {
  const std::string dev = std::string(QKV_SOURCE_DIR) + "/data/bible.es-en.dev.tsv.xz";
  DocumentCorpus english = read_documents(dev, column(3));
  EXPECT_EQ(english.size(), 1000);
  EXPECT_EQ(english.skipped_empty, 0);
  EXPECT_EQ(english.documents[0].rfind("God said, “Let the waters abound", 0), 0u)
      << english.documents[0];
  expect_error<std::runtime_error>([&] { read_documents(dev, column(4)); },
                                   {dev + ":1:", "no column 4", "has 3 tab-separated columns"});
}

TEST(LmDocumentErrors, FilesWithoutDocumentsAreNamed) {
  ScratchDir dir("lm_empty");
  for (auto [name, text] :
       {std::pair{"empty.txt", ""}, {"empty.txt.xz", ""}, {"blank.txt", "\n \n"}}) {
    std::string path = write_text(dir.file(name), text);
    expect_error<std::runtime_error>([&] { read_documents(path, {}); }, {path, "no document"});
  }
  std::string only_separators = write_text(dir.file("sep.txt"), "<s><s>\n<s>");
  expect_error<std::runtime_error>([&] { read_documents(only_separators, separated("<s>")); },
                                   {only_separators, "no document"});
  std::string missing = dir.file("nope.txt");
  expect_error<std::runtime_error>([&] { read_documents(missing, {}); }, {missing, "cannot open"});
}

TEST(LmDocumentErrors, InvalidUtf8NamesFileAndLine) {
  ScratchDir dir("lm_utf8");
  std::string lines = write_text(dir.file("l.txt.xz"), "ok\n\nstill ok\nbad \xC3(\n");
  expect_error<std::runtime_error>([&] { read_documents(lines, {}); },
                                   {lines + ":4:", "invalid UTF-8 at byte 5"});
  std::string tsv = write_text(dir.file("c.tsv"), "a\tb\tc\nx\ty\t\xFF\n");
  expect_error<std::runtime_error>([&] { read_documents(tsv, column(2)); },
                                   {tsv + ":2:", "invalid UTF-8"});
  std::string paragraphs = write_text(dir.file("s.txt"), "one\n\ntw\xE2\x82o\n");
  expect_error<std::runtime_error>([&] { read_documents(paragraphs, separated("\n\n")); },
                                   {paragraphs + ":3:", "invalid UTF-8 at byte 3"});
  std::string first = write_text(dir.file("f.txt"), "\x80");
  expect_error<std::runtime_error>([&] { read_documents(first, separated("x")); },
                                   {first + ":1:", "at byte 1"});
}

TEST(LmDocumentErrors, MissingColumnNamesLineAndColumnCount) {
  ScratchDir dir("lm_column");
  std::string tsv = write_text(dir.file("c.tsv"), "a\tb\tc\n\nd\te\n");
  expect_error<std::runtime_error>([&] { read_documents(tsv, column(3)); },
                                   {tsv + ":3:", "no column 3", "has 2 tab-separated columns"});
}

TEST(LmDocumentErrors, InconsistentOptions) {
  ScratchDir dir("lm_options");
  std::string path = write_text(dir.file("t.txt"), "text\n");
  expect_error<std::invalid_argument>([&] { read_documents(path, column(-1)); },
                                      {"text column", "-1"});
  DocumentOptions both = column(2);
  both.separator = "\n\n";
  expect_error<std::invalid_argument>([&] { read_documents(path, both); },
                                      {"text column (2)", "separator"});
  expect_error<std::invalid_argument>([&] { read_documents(path, separated("\xFF")); },
                                      {"separator", "UTF-8"});
}

TEST(LmTokenStream, LayoutWithAndWithoutBosAndEos) {
  const std::vector<std::string> docs = {"ab", "ñ", "c"};  // "ñ" is two bytes, one character
  const int32_t a = 'a' + 10, b = 'b' + 10, c = 'c' + 10, n1 = 0xC3 + 10, n2 = 0xB1 + 10;
  TokenStream both = build_token_stream(docs, byte_ids, 1, 2);
  EXPECT_EQ(both.tokens, (Ids{1, a, b, 2, 1, n1, n2, 2, 1, c, 2}));
  EXPECT_EQ(both.documents, 3);
  EXPECT_EQ(both.characters, (2 + 1) + (1 + 1) + (1 + 1));
  EXPECT_EQ(build_token_stream(docs, byte_ids, -1, 2).tokens, (Ids{a, b, 2, n1, n2, 2, c, 2}));
  EXPECT_EQ(build_token_stream(docs, byte_ids, -1, -1).tokens, (Ids{a, b, n1, n2, c}));
  EXPECT_EQ(build_token_stream(docs, byte_ids, 1, -1).tokens, (Ids{1, a, b, 1, n1, n2, 1, c}));
}

TEST(LmTokenStream, IndependentOfTheThreadCount) {
  std::vector<std::string> docs;
  for (int i = 0; i < 3000; ++i)
    docs.push_back(std::string(size_t(i * 7919 % 53), char('a' + i % 26)));
  // Lengths that vary with the text, so threads finish documents out of order.
  auto tokenize = [](std::string_view text) {
    Ids ids = byte_ids(text);
    ids.resize(ids.size() * 2 % 37, int32_t(text.size()));
    return ids;
  };
  auto build = [&](int threads) {
    int before = num_threads();
    set_num_threads(threads);
    TokenStream s = build_token_stream(docs, tokenize, 1, 2);
    set_num_threads(before);
    return s;
  };
  TokenStream one = build(1), four = build(4);
  EXPECT_EQ(one.tokens, four.tokens);
  EXPECT_EQ(one.characters, four.characters);
  size_t expected = 0;
  for (auto& d : docs) expected += tokenize(d).size() + 2;
  EXPECT_EQ(one.tokens.size(), expected);
}

TEST(LmTokenStream, TokenizerErrorsReachTheCaller) {
  std::vector<std::string> docs(500, "fine");
  docs[120] = "bad one";
  docs[400] = "bad two";
  auto throwing = [](std::string_view text) {
    if (text.starts_with("bad")) throw std::runtime_error(std::string(text));
    return byte_ids(text);
  };
  expect_error<std::runtime_error>([&] { build_token_stream(docs, throwing, -1, 2); }, {"bad one"});
  auto negative = [](std::string_view text) { return text == "bad two" ? Ids{5, -3} : Ids{5}; };
  expect_error<std::runtime_error>([&] { build_token_stream(docs, negative, -1, 2); },
                                   {"id -3", "document 401"});
}

TEST(LmTokenStream, ReportsCounts) {
  DocumentCorpus corpus{{"ab", "c"}, 3};
  TokenStream stream = build_token_stream(corpus.documents, byte_ids, -1, 0);
  testing::internal::CaptureStderr();
  report_lm_text("train", corpus, stream);
  EXPECT_EQ(testing::internal::GetCapturedStderr(),
            "train: 2 documents, 5 tokens, 5 characters (skipped 3 empty documents)\n");
}

TEST(WindowSampler, TargetsAreTheInputsShiftedByOne) {
  Ids stream;
  for (int i = 0; i < 500; ++i) stream.push_back(int32_t(i * 7 % 101));
  WindowSampler sampler(stream, 16, 8, 42);
  for (int64_t k = 0; k < 5; ++k) {
    LmBatch batch = sampler.batch(k);
    ASSERT_EQ(batch.inputs.shape(), (Shape{8, 16}));
    ASSERT_EQ(batch.targets.shape(), (Shape{8, 16}));
    EXPECT_EQ(batch.inputs.dtype(), DType::i32);
    EXPECT_EQ(batch.scored_tokens, 8 * 16);
    std::vector<int64_t> starts = sampler.starts(k);
    for (int64_t r = 0; r < 8; ++r) {
      auto s = stream.begin() + starts[size_t(r)];
      EXPECT_EQ(row(batch.inputs, r), Ids(s, s + 16));
      EXPECT_EQ(row(batch.targets, r), Ids(s + 1, s + 17));
    }
  }
}

TEST(WindowSampler, SameSeedSameBatchesAndSeekResumes) {
  WindowSampler a(positions(1000), 8, 4, 7), b(positions(1000), 8, 4, 7),
      c(positions(1000), 8, 4, 8);
  std::vector<Ids> drawn;
  for (int k = 0; k < 6; ++k) {
    EXPECT_EQ(a.position(), k);
    LmBatch x = a.next(), y = b.next();
    EXPECT_EQ(values(x.inputs), values(y.inputs));
    EXPECT_EQ(values(x.targets), values(y.targets));
    drawn.push_back(values(x.inputs));
  }
  EXPECT_NE(drawn[0], values(c.next().inputs));  // another seed, other starts
  EXPECT_NE(drawn[0], drawn[1]);                 // batches differ from one another
  WindowSampler resumed(positions(1000), 8, 4, 7);
  resumed.seek(3);
  EXPECT_EQ(resumed.position(), 3);
  EXPECT_EQ(values(resumed.next().inputs), drawn[3]);
  EXPECT_EQ(values(resumed.next().inputs), drawn[4]);
  EXPECT_EQ(resumed.position(), 5);
  expect_error<std::invalid_argument>([&] { resumed.seek(-1); }, {"no batch -1"});
}

TEST(WindowSampler, StartsCoverTheWholeRangeEvenly) {
  const int64_t n = 20, context = 13;  // starts 0 .. 6
  WindowSampler sampler(positions(n), context, 4, 3);
  std::vector<int> seen(n, 0);
  for (int64_t k = 0; k < 350; ++k) {
    LmBatch batch = sampler.batch(k);
    for (int64_t r = 0; r < 4; ++r) {
      int32_t start = row(batch.inputs, r)[0];
      ASSERT_LE(start, n - context - 1);
      ++seen[size_t(start)];
    }
  }
  for (int64_t s = 0; s <= n - context - 1; ++s) {  // 200 expected each
    EXPECT_GT(seen[size_t(s)], 140) << s;
    EXPECT_LT(seen[size_t(s)], 260) << s;
  }
  // The shortest stream has one window, at 0.
  WindowSampler one(positions(9), 8, 3, 1);
  EXPECT_EQ(values(one.next().targets),
            (Ids{1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8}));
}

TEST(WindowSampler, DataShorterThanOneWindowIsAnError) {
  expect_error<std::invalid_argument>([] { WindowSampler(positions(8), 8, 2, 1); },
                                      {"8 tokens", "context 8 (9 tokens)"});
  expect_error<std::invalid_argument>([] { WindowSampler(positions(50), 0, 2, 1); },
                                      {"context", "0"});
  expect_error<std::invalid_argument>([] { WindowSampler(positions(50), 4, 0, 1); },
                                      {"batch size", "0"});
}

TEST(EvalWindows, ScoreEveryTokenAfterTheFirstOnce) {
  for (auto [n, context, batch_size] : {std::tuple{23, 5, 2}, {11, 5, 2}, {2, 4, 3}, {40, 3, 64}}) {
    TokenStream stream{positions(n), 1, 1234};
    EvalWindows eval = eval_windows(stream, context, batch_size);
    EXPECT_EQ(eval.scored_tokens, n - 1);
    EXPECT_EQ(eval.characters, 1234);
    std::vector<int> scored(size_t(n), 0);
    int64_t rows = 0, total = 0;
    for (auto& batch : eval.batches) {
      ASSERT_EQ(batch.inputs.shape(), (Shape{batch.rows(), context}));
      ASSERT_EQ(batch.targets.shape(), batch.inputs.shape());
      EXPECT_LE(batch.rows(), batch_size);
      int64_t in_batch = 0;
      for (int64_t r = 0; r < batch.rows(); ++r, ++rows) {
        Ids in = row(batch.inputs, r), out = row(batch.targets, r);
        for (int64_t t = 0; t < context; ++t) {
          if (out[size_t(t)] == kIgnoreTarget) continue;
          EXPECT_EQ(in[size_t(t)], rows * context + t);  // window r starts at r * L
          EXPECT_EQ(out[size_t(t)], in[size_t(t)] + 1);
          ++scored[size_t(out[size_t(t)])];
          ++in_batch;
        }
      }
      EXPECT_EQ(batch.scored_tokens, in_batch);
      total += in_batch;
    }
    EXPECT_EQ(rows, (n - 1 + context - 1) / context);
    EXPECT_EQ(eval.batches.size(), size_t((rows + batch_size - 1) / batch_size));
    EXPECT_EQ(total, n - 1);
    EXPECT_EQ(scored[0], 0);
    for (int64_t i = 1; i < n; ++i) EXPECT_EQ(scored[size_t(i)], 1) << "token " << i;
  }
}

TEST(EvalWindows, LastWindowIsPaddedAndBitsPerCharacter) {
  TokenStream stream{{10, 11, 12, 13, 14, 15, 16, 17}, 2, 9};
  EvalWindows eval = eval_windows(stream, 3, 2);  // windows at 0, 3, 6
  ASSERT_EQ(eval.batches.size(), 2u);
  EXPECT_EQ(values(eval.batches[0].inputs), (Ids{10, 11, 12, 13, 14, 15}));
  EXPECT_EQ(values(eval.batches[0].targets), (Ids{11, 12, 13, 14, 15, 16}));
  EXPECT_EQ(values(eval.batches[1].inputs), (Ids{16, 0, 0}));
  EXPECT_EQ(values(eval.batches[1].targets), (Ids{17, -1, -1}));
  EXPECT_EQ(eval.batches[1].scored_tokens, 1);
  EXPECT_DOUBLE_EQ(eval.bits_per_character(9 * std::log(2.0) * 1.5), 1.5);
  expect_error<std::invalid_argument>(
      [] {
        eval_windows(TokenStream{{5}, 1, 2}, 4, 1);
      },
      {"1 tokens", "at least 2"});
  expect_error<std::invalid_argument>([&] { eval_windows(stream, 0, 1); }, {"context"});
}

}  // namespace
}  // namespace qkv::test
