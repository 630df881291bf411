// The language models' tokenizers (data/lm_tokenizer.h): GPT-2's and Llama 3's byte-level BPE
// against a Python reference written from their published definitions (pre-tokenisation, ids,
// U+FFFD repair), the character and SentencePiece tokenizers, round trips, the model-directory
// files and errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "data/bpe_pretokenizer.h"
#include "data/corpus.h"
#include "data/lm_tokenizer.h"
#include "eval/unicode_text.h"
#include "io/atomic_file.h"
#include "support/bpe_texts.h"
#include "support/data_files.h"
#include "support/python_script.h"

namespace qkv::test {
namespace {

using namespace qkv::data;

class ByteBpeTest : public ReferenceBpeSuite<ByteBpeTest> {
 protected:
  static void SetUpTestSuite() { make("lm_bpe", "make", 3); }
};

// The texts, and random strings of characters of every class the patterns tell apart (so that
// each alternative's backtracking meets every neighbour).
TEST_F(ByteBpeTest, PreTokenisationMatchesTheRegexModule) {
  const std::vector<std::string> characters = {
      " ",      "  ",   "\t",         "\r",     "\n",     "\u00a0", "\u3000", "\u2028",
      "\x0b",   "\x1c", "\u0085",     "a",      "Z",      "s",      "S",      "t",
      "re",     "VE",   "m",          "Ll",     "d",      "\u017f", "\u00e9", "\u0301",
      "\u4e2d", "0",    "7",          "\u0663", "\u216b", "\u00bd", "'",      "!",
      ".",      "-",    "\U0001F642", "\u200b", "_"};
  std::vector<std::string> texts = texts_;
  std::mt19937 rng(7);
  for (int i = 0; i < 3000; ++i) {
    std::string text;
    for (int k = int(rng() % 16); k >= 0; --k) text += characters[rng() % characters.size()];
    texts.push_back(text);
  }
  write_json(dir_->file("split.json"), texts);
  for (auto [kind, name] :
       {std::pair{Pretokenizer::gpt2, "gpt2"}, {Pretokenizer::llama3, "llama3"}}) {
    SCOPED_TRACE(name);
    run_python_script("byte_bpe_reference.py", std::string("split ") + name + " " +
                                                   dir_->file("split.json") + " " +
                                                   dir_->file("words.json"));
    auto expected = read_json(dir_->file("words.json"));
    ASSERT_EQ(expected.size(), texts.size());
    for (size_t i = 0; i < texts.size(); ++i) {
      std::vector<std::string_view> words;
      pretokenize(kind, texts[i], words);
      EXPECT_EQ(std::vector<std::string>(words.begin(), words.end()),
                expected[i].get<std::vector<std::string>>())
          << "text " << i << ": " << nlohmann::json(texts[i]).dump();
    }
  }
}

TEST_F(ByteBpeTest, IdsMatchTheReference) {
  const LmTokenizer& tok = *tokenizer_;
  EXPECT_EQ(tok.type(), "byte-bpe");
  EXPECT_FALSE(tok.add_bos());
  EXPECT_EQ(tok.piece(tok.eos_id()), "<|endoftext|>");
  EXPECT_EQ(tok.bos_id(), tok.eos_id());
  size_t merged = 0;
  expect_reference_ids([&](int32_t id) { merged += tok.decode_bytes({id}).size() > 1; });
  EXPECT_GT(merged, 500u);  // the merges do apply
}

TEST_F(ByteBpeTest, DecodeGivesTheTextBackAndSkipsSpecialTokens) {
  const LmTokenizer& tok = *tokenizer_;
  for (const auto& text : texts_) {
    if (text.find("<|endoftext|>") != std::string::npos) continue;
    EXPECT_EQ(tok.decode(tok.encode(text)), text);
  }
  EXPECT_EQ(tok.decode(tok.encode("one<|endoftext|>two")), "onetwo");
}

TEST_F(ByteBpeTest, DecodeRepairsInvalidUtf8AsPython) {
  const LmTokenizer& tok = *tokenizer_;
  std::vector<int32_t> byte_id(256, -1);
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    std::string bytes = tok.decode_bytes({id});
    if (bytes.size() == 1) byte_id[uint8_t(bytes[0])] = id;
  }
  for (int b = 0; b < 256; ++b) ASSERT_GE(byte_id[b], 0) << "byte " << b;
  // Byte strings rich in lead and continuation bytes, plus the classic cases.
  std::vector<std::string> cases = {"\xe4\xb8",
                                    "\xe4\xb8"
                                    "A",
                                    "\xf0\x80\x80",
                                    "\xed\xa0\x80",
                                    "\xc0\xaf",
                                    "\xf4\x90\x80\x80",
                                    "\xff",
                                    "ok\xe2\x82"};
  const uint8_t pool[] = {'a',  ' ',  0x80, 0xBF, 0x9F, 0xA0, 0x8F, 0x90, 0xC2, 0xC3,
                          0xDF, 0xE0, 0xE4, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xC0, 0xFF};
  std::mt19937 rng(11);
  for (int i = 0; i < 300; ++i) {
    std::string bytes;
    for (int k = int(rng() % 8); k >= 0; --k) bytes.push_back(char(pool[rng() % sizeof pool]));
    cases.push_back(bytes);
  }
  nlohmann::json hex = nlohmann::json::array();
  std::vector<std::vector<int32_t>> ids(cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    std::string h;
    char buf[3];
    for (char c : cases[i]) {
      std::snprintf(buf, sizeof buf, "%02x", unsigned(uint8_t(c)));
      h += buf;
      ids[i].push_back(byte_id[uint8_t(c)]);
    }
    hex.push_back(h);
  }
  write_json(dir_->file("bytes.json"), hex);
  run_python_script("byte_bpe_reference.py",
                    "replace " + dir_->file("bytes.json") + " " + dir_->file("replaced.json"));
  auto expected = read_json(dir_->file("replaced.json"));
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(tok.decode_bytes(ids[i]), cases[i]);
    std::string h;
    char buf[3];
    for (char c : tok.decode(ids[i])) {
      std::snprintf(buf, sizeof buf, "%02x", unsigned(uint8_t(c)));
      h += buf;
    }
    EXPECT_EQ(h, expected[i].get<std::string>()) << "bytes " << hex[i].get<std::string>();
  }
}

TEST_F(ByteBpeTest, SaveWritesTheFilesVerbatim) {
  ScratchDir copy("lm_bpe_copy");
  tokenizer_->save(copy.file(""));
  for (const char* name : {"vocab.json", "merges.txt"})
    EXPECT_EQ(read_file(copy.file(name)), read_file(dir_->file(name))) << name;
  auto loaded = LmTokenizer::load_dir(copy.file(""));
  EXPECT_EQ(loaded->type(), "byte-bpe");
  EXPECT_EQ(loaded->vocab_size(), tokenizer_->vocab_size());
  EXPECT_EQ(loaded->eos_id(), tokenizer_->eos_id());
  EXPECT_EQ(loaded->bos_id(), tokenizer_->bos_id());
  EXPECT_EQ(loaded->add_bos(), tokenizer_->add_bos());
  for (const auto& text : texts_) EXPECT_EQ(loaded->encode(text), tokenizer_->encode(text));
}

// Five megabytes of text and a one-megabyte word (merging must not be quadratic in a word's
// length) round-trip. Their speed is not asserted here (a shared machine's timings are noise):
// measured by hand, 0.2-0.6 s and 0.06-0.1 s on the 2-core machine.
TEST_F(ByteBpeTest, EncodesFiveMegabytesAndAOneMegabyteWord) {
  ParallelCorpus corpus =
      read_corpus(std::string(QKV_SOURCE_DIR) + "/data/bible.es-en.train.tsv.xz");
  std::string text;
  for (size_t i = 0; text.size() < (5u << 20); i = (i + 1) % corpus.src.size())
    text += corpus.src[i] + "\n" + corpus.tgt[i] + "\n";
  EXPECT_EQ(tokenizer_->decode(tokenizer_->encode(text)), text);

  std::string word;
  std::mt19937 rng(3);
  while (word.size() < (1u << 20)) word += "abc"[rng() % 3];
  EXPECT_EQ(tokenizer_->decode(tokenizer_->encode(word)), word);
}

TEST(LmTokenizerTest, CharsTokenizerOfNanoGpt) {
  auto tok = LmTokenizer::train("chars", {"hello world", "¡olé!\n"}, {});
  EXPECT_EQ(tok->type(), "chars");
  EXPECT_EQ(tok->eos_id(), 0);
  EXPECT_EQ(tok->bos_id(), -1);
  EXPECT_FALSE(tok->add_bos());
  std::vector<std::string> pieces;
  for (int32_t id = 0; id < tok->vocab_size(); ++id) pieces.push_back(tok->piece(id));
  EXPECT_EQ(pieces, (std::vector<std::string>{"<|endoftext|>", "\n", " ", "!", "d", "e", "h", "l",
                                              "o", "r", "w", "¡", "é"}));
  EXPECT_EQ(tok->encode("hole<|endoftext|>"), (std::vector<int32_t>{6, 8, 7, 5, 0}));
  for (std::string text : {"hello world", "¡olé!\n", "", "  wow\n\n"})
    EXPECT_EQ(tok->decode(tok->encode(text)), text);

  ScratchDir dir("lm_chars");
  tok->save(dir.file(""));
  EXPECT_TRUE(LmTokenizer::exists_in(dir.file("")));
  auto loaded = LmTokenizer::load_dir(dir.file(""));
  EXPECT_EQ(loaded->type(), "chars");
  EXPECT_EQ(loaded->eos_id(), 0);
  EXPECT_EQ(loaded->bos_id(), -1);
  EXPECT_EQ(loaded->encode("hello world\n¡olé!"), tok->encode("hello world\n¡olé!"));
  EXPECT_EQ(read_json(dir.file("chars.json")), nlohmann::json(pieces));
  EXPECT_EQ(read_file(dir.file("tokenizer.yaml")),
            "type: chars\nadd-bos: false\nbos-token: \"\"\neos-token: \"<|endoftext|>\"\n");
}

TEST(LmTokenizerTest, NamedErrors) {
  auto tok = LmTokenizer::train("chars", {"abc"}, {});
  expect_error<std::invalid_argument>([&] { tok->encode("ab中"); }, {"U+4E2D", "'中'"});
  expect_error<std::invalid_argument>([&] { tok->encode("abc\xff"); }, {"invalid UTF-8", "byte 3"});
  expect_error<std::invalid_argument>([&] { tok->decode({1, 4}); }, {"token id 4"});
  expect_error<std::invalid_argument>([&] { tok->decode({-1}); }, {"token id -1"});
  expect_error<std::invalid_argument>(
      [&] {
        LmTokenizer::train("chars", {"ok", "a\xc3"}, {});
      },
      {"document 1", "byte 1"});
  expect_error<std::invalid_argument>([&] { LmTokenizer::train("byte-bpe", {"a"}, {}); },
                                      {"byte-bpe"});
}

// Writes a chars tokenizer and a byte-bpe one ("<|endoftext|>" and bytes, no merges) to check
// that load_dir names the file a broken directory is missing or has corrupt.
TEST(LmTokenizerTest, LoadDirNamesTheMissingOrCorruptFile) {
  ScratchDir dir("lm_broken");
  std::string d = dir.file("");
  expect_error<std::runtime_error>([&] { LmTokenizer::load_dir(d); }, {dir.file("tokenizer.yaml")});
  EXPECT_FALSE(LmTokenizer::exists_in(d));
  auto yaml = [&](const std::string& type, const std::string& eos) {
    write_bytes(
        dir.file("tokenizer.yaml"),
        "type: " + type + "\nadd-bos: false\nbos-token: \"\"\neos-token: \"" + eos + "\"\n");
  };
  yaml("chars", "<|endoftext|>");
  expect_error<std::runtime_error>([&] { LmTokenizer::load_dir(d); }, {dir.file("chars.json")});
  write_bytes(dir.file("chars.json"), "[\"<|endoftext|>\", \"a\", ");
  expect_error<std::runtime_error>([&] { LmTokenizer::load_dir(d); },
                                   {dir.file("chars.json"), "JSON"});
  write_bytes(dir.file("chars.json"), "[\"<|endoftext|>\", \"ab\"]");
  expect_error<std::runtime_error>([&] { LmTokenizer::load_dir(d); },
                                   {dir.file("chars.json"), "\"ab\""});
  write_bytes(dir.file("chars.json"), "[\"<eos>\", \"a\"]");
  expect_error<std::runtime_error>([&] { LmTokenizer::load_dir(d); },
                                   {dir.file("tokenizer.yaml"), "<|endoftext|>"});

  yaml("byte-bpe", "<|endoftext|>");
  expect_error<std::runtime_error>([&] { LmTokenizer::load_dir(d); }, {dir.file("vocab.json")});
  // GPT-2's byte tokens: printable Latin-1 bytes stand for themselves, the others for U+0100...
  nlohmann::json vocab = {{"<|endoftext|>", 0}};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    vocab[encode_utf8(std::u32string(1, printable ? char32_t(b) : next++))] = vocab.size();
  }
  vocab["ab"] = vocab.size();
  write_json(dir.file("vocab.json"), vocab);
  expect_error<std::runtime_error>([&] { LmTokenizer::load_dir(d); }, {dir.file("merges.txt")});
  write_bytes(dir.file("merges.txt"), "#version: 0.2\na b\nab c\n");
  expect_error<std::runtime_error>(
      [&] { LmTokenizer::load_dir(d); },
      {dir.file("merges.txt") + ":3", "\"abc\" is not in the vocabulary"});
  write_bytes(dir.file("merges.txt"), "#version: 0.2\na b c\n");
  expect_error<std::runtime_error>([&] { LmTokenizer::load_dir(d); },
                                   {dir.file("merges.txt") + ":2", "two tokens"});
  write_bytes(dir.file("merges.txt"), "#version: 0.2\na b\n");
  EXPECT_EQ(LmTokenizer::load_dir(d)->encode("cab<|endoftext|>"),
            (std::vector<int32_t>{vocab["c"].get<int32_t>(), vocab["ab"].get<int32_t>(), 0}));
  vocab["zz"] = vocab["\xc4\x80"];  // the token of byte 0 renamed
  vocab.erase("\xc4\x80");
  write_json(dir.file("vocab.json"), vocab);
  expect_error<std::runtime_error>([&] { LmTokenizer::load_dir(d); },
                                   {dir.file("vocab.json"), "no token for byte 0"});
  write_bytes(dir.file("vocab.json"), "{\"a\": 0, \"b\": 2}");
  expect_error<std::runtime_error>([&] { LmTokenizer::load_dir(d); }, {dir.file("vocab.json")});

  yaml("sentencepiece", "</s>");
  expect_error<std::runtime_error>([&] { LmTokenizer::load_dir(d); }, {dir.file("spm.model")});
  write_bytes(dir.file("spm.model"), "not a model");
  expect_error<std::runtime_error>([&] { LmTokenizer::load_dir(d); },
                                   {dir.file("spm.model"), "not a SentencePiece model"});

  yaml("wordpiece", "");
  expect_error<std::runtime_error>([&] { LmTokenizer::load_dir(d); },
                                   {dir.file("tokenizer.yaml"), "wordpiece"});
  write_bytes(dir.file("tokenizer.yaml"), "type: chars\nadd-bos: maybe\n");
  expect_error<std::runtime_error>([&] { LmTokenizer::load_dir(d); },
                                   {dir.file("tokenizer.yaml"), "add-bos"});
  write_bytes(dir.file("tokenizer.yaml"), "type: [chars\n");
  expect_error<std::runtime_error>([&] { LmTokenizer::load_dir(d); },
                                   {dir.file("tokenizer.yaml"), "YAML"});
}

std::vector<std::string> bible_documents(const std::string& split, size_t count) {
  ParallelCorpus corpus =
      read_corpus(std::string(QKV_SOURCE_DIR) + "/data/bible.es-en." + split + ".tsv.xz");
  std::vector<std::string> documents;  // a few verses, both languages, per document
  for (size_t i = 0; i + 4 <= corpus.src.size() && documents.size() < count; i += 4) {
    std::string doc;
    for (size_t k = i; k < i + 4; ++k) doc += corpus.src[k] + "\n" + corpus.tgt[k] + "\n";
    documents.push_back(doc);
  }
  return documents;
}

LmTokenizerOptions spm_options(uint64_t seed) {
  LmTokenizerOptions options;
  options.vocab_size = 1200;
  options.max_sentences = 3000;  // lines, of 16,000
  options.seed = seed;
  return options;
}

TEST(LmTokenizerTest, SentencePieceOfLlamasLayout) {
  auto documents = bible_documents("train", 2000);
  auto tok = LmTokenizer::train("sentencepiece", documents, spm_options(4));
  EXPECT_EQ(tok->type(), "sentencepiece");
  EXPECT_EQ(tok->vocab_size(), 1200);
  EXPECT_EQ(tok->piece(0), "<unk>");
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->piece(1), "<s>");
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->piece(2), "</s>");
  EXPECT_TRUE(tok->add_bos());
  EXPECT_EQ(tok->piece(3), "<0x00>");

  // Round trips: whitespace and newlines kept, unseen characters as bytes.
  for (const auto& doc : bible_documents("dev", 50)) EXPECT_EQ(tok->decode(tok->encode(doc)), doc);
  for (std::string text : {"  two  spaces\tand a tab\n\n", "中文 🙂 ☃ ß", "", " x"})
    EXPECT_EQ(tok->decode(tok->encode(text)), text);
  auto ids = tok->encode("中");
  ASSERT_EQ(ids.size(), 4u);  // "▁" then the three bytes of U+4E2D
  EXPECT_EQ(tok->piece(ids[1]), "<0xE4>");
  EXPECT_EQ(tok->piece(ids[3]), "<0xAD>");
  EXPECT_EQ(tok->decode_bytes({ids[1], ids[2]}), "\xE4\xB8");
  EXPECT_EQ(tok->decode({ids[1], ids[2]}), "\uFFFD");
  EXPECT_EQ(tok->decode({1, ids[0], ids[1], ids[2], ids[3], 2}), "中");
  expect_error<std::invalid_argument>([&] { tok->encode("a\xC3("); }, {"byte 1"});
  expect_error<std::invalid_argument>([&] { tok->decode({1200}); }, {"token id 1200"});

  // The same seed gives the same model file; save and load keep everything.
  ScratchDir first("lm_spm_1"), second("lm_spm_2");
  tok->save(first.file(""));
  LmTokenizer::train("sentencepiece", documents, spm_options(4))->save(second.file(""));
  EXPECT_EQ(read_file(first.file("spm.model")), read_file(second.file("spm.model")));
  auto loaded = LmTokenizer::load_dir(first.file(""));
  EXPECT_EQ(loaded->type(), "sentencepiece");
  EXPECT_EQ(loaded->bos_id(), 1);
  EXPECT_EQ(loaded->eos_id(), 2);
  EXPECT_TRUE(loaded->add_bos());
  for (const auto& doc : bible_documents("dev", 20))
    EXPECT_EQ(loaded->encode(doc), tok->encode(doc));
}

}  // namespace
}  // namespace qkv::test
