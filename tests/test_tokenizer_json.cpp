// Byte-level BPE from a Hugging Face tokenizer.json (data/tokenizer_json.h), as Llama 3 ships
// it: Llama 3's pre-tokenisation, ignore_merges and added tokens, against the Python reference
// (tests/python/byte_bpe_reference.py); the file kept verbatim; what it may not hold, refused
// by field.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "data/lm_tokenizer.h"
#include "eval/unicode_text.h"
#include "io/atomic_file.h"
#include "support/bpe_texts.h"
#include "support/data_files.h"
#include "support/python_script.h"

namespace qkv::test {
namespace {

using namespace qkv::data;

class Llama3BpeTest : public ReferenceBpeSuite<Llama3BpeTest> {
 protected:
  static void SetUpTestSuite() { make("lm_llama3_bpe", "make-llama3", 4); }
};

TEST_F(Llama3BpeTest, IdsMatchTheReference) {
  const LmTokenizer& tok = *tokenizer_;
  EXPECT_EQ(tok.type(), "byte-bpe");
  EXPECT_TRUE(tok.add_bos());
  EXPECT_EQ(tok.piece(tok.bos_id()), "<|begin_of_text|>");
  EXPECT_EQ(tok.piece(tok.eos_id()), "<|eot_id|>");
  // The reference's vocabulary: 256 bytes, the merges' tokens, 20 whole words, 7 added tokens.
  auto json = read_json(dir_->file("tokenizer.json"));
  const int32_t model_tokens = int32_t(json["model"]["vocab"].size());
  EXPECT_EQ(tok.vocab_size(), model_tokens + 7);
  size_t whole_words = 0, added = 0;
  expect_reference_ids([&](int32_t id) {
    whole_words += id >= model_tokens - 20 && id < model_tokens;
    added += id >= model_tokens;
  });
  // Each of the 20 whole words occurs in the texts; the merges alone never make them.
  EXPECT_GE(whole_words, 20u);
  EXPECT_GT(added, 50u);  // the added tokens are split off
}

// Decoding gives the text back, less the bos and eos tokens; the other added tokens decode to
// their own text. "<|eot_id|>\n" is an added token too: the longer one wins where both start.
TEST_F(Llama3BpeTest, DecodeGivesTheTextBackLessBosAndEos) {
  const LmTokenizer& tok = *tokenizer_;
  const std::string eos = "<|eot_id|>";
  for (const auto& text : texts_) {
    if (text.find("<|begin_of_text|>") != std::string::npos) continue;
    std::string expected = text;
    for (size_t at = 0; (at = expected.find(eos, at)) != std::string::npos;) {
      if (expected.compare(at + eos.size(), 1, "\n") == 0)
        at += eos.size() + 1;
      else
        expected.erase(at, eos.size());
    }
    EXPECT_EQ(tok.decode(tok.encode(text)), expected) << nlohmann::json(text).dump();
  }
  auto ids = tok.encode("a<|start_header_id|>b<|eot_id|>\nc<|eot_id|>");
  ASSERT_EQ(ids.size(), 6u);
  EXPECT_EQ(tok.decode_bytes({ids[3]}), "<|eot_id|>\n");
  EXPECT_EQ(ids[5], tok.eos_id());
  EXPECT_EQ(tok.decode(ids), "a<|start_header_id|>b<|eot_id|>\nc");
}

TEST_F(Llama3BpeTest, SaveWritesTheFileVerbatim) {
  ScratchDir copy("lm_llama3_bpe_copy");
  tokenizer_->save(copy.file(""));
  EXPECT_EQ(read_file(copy.file("tokenizer.json")), read_file(dir_->file("tokenizer.json")));
  EXPECT_FALSE(std::filesystem::exists(copy.file("vocab.json")));
  auto loaded = LmTokenizer::load_dir(copy.file(""));
  EXPECT_EQ(loaded->vocab_size(), tokenizer_->vocab_size());
  EXPECT_EQ(loaded->bos_id(), tokenizer_->bos_id());
  EXPECT_EQ(loaded->eos_id(), tokenizer_->eos_id());
  EXPECT_TRUE(loaded->add_bos());
  for (const auto& text : texts_) EXPECT_EQ(loaded->encode(text), tokenizer_->encode(text));
}

// A minimal tokenizer.json: the 256 byte tokens (GPT-2's byte characters) and "ab", merges as
// "a b" strings (the older form), GPT-2's ByteLevel pre-tokenizer, one added token.
nlohmann::json minimal_tokenizer_json() {
  nlohmann::json vocab = nlohmann::json::object();
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    vocab[encode_utf8(std::u32string(1, printable ? char32_t(b) : next++))] = b;
  }
  vocab["ab"] = 256;
  return {{"added_tokens",
           {{{"id", 257},
             {"content", "<eos>"},
             {"lstrip", false},
             {"rstrip", false},
             {"single_word", false},
             {"special", true}}}},
          {"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
          {"post_processor", {{"type", "ByteLevel"}}},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"a b"}}}}};
}

TEST(TokenizerJsonTest, GptTwosLayoutAndTheOlderMerges) {
  ScratchDir dir("tokenizer_json_minimal");
  write_bytes(dir.file("tokenizer.json"), minimal_tokenizer_json().dump());
  write_bytes(dir.file("tokenizer.yaml"),
              "type: byte-bpe\nadd-bos: false\nbos-token: \"\"\neos-token: \"<eos>\"\n");
  auto tok = LmTokenizer::load_dir(dir.file(""));
  EXPECT_EQ(tok->vocab_size(), 258);
  EXPECT_EQ(tok->eos_id(), 257);
  // GPT-2's pattern keeps "'s" whole and " ab" one word, "ab" merged; the added token split off.
  EXPECT_EQ(tok->encode("cab's<eos> ab"),
            (std::vector<int32_t>{'c', 256, '\'', 's', 257, 32, 256}));
}

// Each field qkv cannot honour is refused with the file's path and the field's name.
TEST(TokenizerJsonTest, RefusesWhatItCannotComputeExactly) {
  ScratchDir dir("tokenizer_json_errors");
  write_bytes(dir.file("tokenizer.yaml"),
              "type: byte-bpe\nadd-bos: false\nbos-token: \"\"\neos-token: \"\"\n");
  std::string path = dir.file("tokenizer.json");
  auto refused = [&](const std::function<void(nlohmann::json&)>& change,
                     const std::vector<std::string>& parts) {
    nlohmann::json j = minimal_tokenizer_json();
    change(j);
    write_bytes(path, j.dump());
    std::vector<std::string> expected = {path};
    expected.insert(expected.end(), parts.begin(), parts.end());
    expect_error<std::runtime_error>([&] { LmTokenizer::load_dir(dir.file("")); }, expected);
  };
  using J = nlohmann::json;
  refused([](J& j) { j["normalizer"] = {{"type", "NFC"}}; }, {"normalizer", "NFC"});
  refused(
      [](J& j) {
        j["pre_tokenizer"] = {{"type", "Metaspace"}};
      },
      {"pre_tokenizer", "Metaspace"});
  refused([](J& j) { j["pre_tokenizer"]["add_prefix_space"] = true; }, {"pre_tokenizer"});
  refused(
      [](J& j) {
        j["pre_tokenizer"] = {
            {"type", "Sequence"},
            {"pretokenizers",
             {{{"type", "Split"}, {"pattern", {{"Regex", "\\p{N}+"}}}, {"behavior", "Isolated"}},
              {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
      },
      {"pre_tokenizer.pretokenizers[0].pattern", "\\p{N}+"});
  refused([](J& j) { j["model"]["type"] = "WordPiece"; }, {"model.type", "WordPiece"});
  refused([](J& j) { j["model"]["byte_fallback"] = true; }, {"model.byte_fallback"});
  refused([](J& j) { j["model"]["dropout"] = 0.1; }, {"model.dropout"});
  refused([](J& j) { j["model"]["merges"] = {"a c"}; }, {"model.merges[0]", "\"ac\""});
  refused([](J& j) { j["model"]["merges"] = {"abc"}; }, {"model.merges[0]", "two tokens"});
  refused([](J& j) { j["model"]["vocab"]["zz"] = 300; }, {"model.vocab", "id 258"});
  refused([](J& j) { j["model"]["vocab"][""] = 258; }, {"model.vocab", "empty token"});
  refused([](J& j) { j["added_tokens"][0]["lstrip"] = true; }, {"added_tokens[0].lstrip", "<eos>"});
  refused([](J& j) { j["added_tokens"][0]["id"] = 256; }, {"added_tokens[0]", "\"ab\""});
  refused([](J& j) { j["decoder"] = {{"type", "Metaspace"}}; }, {"decoder"});
  refused(
      [](J& j) {
        j["post_processor"] = {
            {"type", "TemplateProcessing"},
            {"single", {{{"Sequence", {{"id", "A"}}}}, {{"SpecialToken", {{"id", "<eos>"}}}}}}};
      },
      {"post_processor.single", "at most one special token before the text"});
  write_bytes(path, "{\"model\": ");
  expect_error<std::runtime_error>([&] { LmTokenizer::load_dir(dir.file("")); },
                                   {path, "not valid JSON"});
}

}  // namespace
}  // namespace qkv::test
