// Test support for the byte-level BPE tokenizers: the texts they are checked on against the
// Python reference (tests/python/byte_bpe_reference.py), JSON files to exchange with it, and a
// suite whose tokenizer the reference makes once.
#pragma once
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "data/lm_tokenizer.h"
#include "io/atomic_file.h"
#include "support/data_files.h"
#include "support/python_script.h"

namespace qkv::test {

inline nlohmann::json read_json(const std::string& path) {
  return nlohmann::json::parse(read_file(path));
}
inline void write_json(const std::string& path, const nlohmann::json& j) {
  write_bytes(path, j.dump());
}

// Texts of the cases GPT-2's and Llama 3's patterns distinguish, then random mixtures of such
// fragments.
inline std::vector<std::string> bpe_texts() {
  std::vector<std::string> texts = {
      "Hello world",
      "I'm sure they'll say it's what we've done, isn't it? You're right, I'd say.",
      "'s 't 're 've 'm 'll 'd ''s 'S 'LL",
      "a  b   c    d",
      "trailing spaces   ",
      "   leading spaces",
      "line one\nline two\n\nline four\n",
      "tab\tseparated\t\tvalues \t x",
      "windows\r\nline end",
      "1234567890 3.14159 2024-01-01 +42",
      "El niño comió piñas con Ángel, ¿verdad? ¡Sí! Él está aquí.",
      "café vs cafe\u0301",
      "我爱自然语言处理。日本語のテキスト、한국어",
      "emoji 👍🏽 family 👨‍👩‍👧 smile 🙂!",
      "first document<|endoftext|>second document",
      "<|endoftext|>",
      " <|endoftext|> spaced <|endoftext|><|endoftext|>",
      "nbsp\u00a0here ideographic\u3000space line\u2028sep",
      "arabic ٣٤٥ roman Ⅻ half ½ superscript ²",
      "I'M SURE HE'S THERE, WE'LL SEE, THEY'RE I'D 'Ve x'ſ x'ſt",
      "1 12 123 1234 12345 123456 1234567 ٣٤٥٦ ½½½½",
      "end.\n\nNext:\r\n\r\n  indented\n\t\ttabbed \n \n",
      "!hello ?world ¿qué? \tword \u00a0word ...\n\n...\n",
      "<|begin_of_text|>system<|eot_id|>\nuser<|eot_id|>\n\n<|eot_id|><|begin_of_text|>",
      "",
  };
  const std::vector<std::string> fragments = {"Hello",
                                              " world",
                                              "I",
                                              "'m",
                                              "can",
                                              "'t",
                                              " we",
                                              "'ll",
                                              "'",
                                              "''",
                                              "'re",
                                              "  ",
                                              "   ",
                                              " ",
                                              "\n",
                                              "\n\n",
                                              "\t",
                                              " \t ",
                                              "\r\n",
                                              "123",
                                              " 4567",
                                              "3.14",
                                              "niño",
                                              " piñata",
                                              "¿Qué?",
                                              "¡Sí!",
                                              "é",
                                              "e\u0301",
                                              "我爱",
                                              "日本語",
                                              "。",
                                              "👍🏽",
                                              " 🙂",
                                              "<|endoftext|>",
                                              "\u00a0",
                                              "\u3000",
                                              "\u2028",
                                              "\x1c",
                                              "\u0085",
                                              "٣٤",
                                              "Ⅻ",
                                              "½",
                                              "$",
                                              "--",
                                              "...",
                                              " !",
                                              "x",
                                              "A",
                                              "ß",
                                              "Ω",
                                              "\u200b",
                                              "\x7f",
                                              "\x01",
                                              "\v",
                                              "\f",
                                              "'s",
                                              "'S",
                                              "'Ll",
                                              "x'ſ",
                                              "12345",
                                              "!\n",
                                              ".\r\n",
                                              " \n ",
                                              "\n\n\t",
                                              "\t",
                                              "\u00a0x",
                                              "!x",
                                              "<|eot_id|>",
                                              "<|eot_id|>\n",
                                              "<|begin_of_text|>"};
  // Long runs: every occurrence of a pair merged, left to right, pass after pass.
  texts.push_back(std::string(37, 'a') + " " + std::string(64, 'a') + " " + std::string(40, '='));
  std::string abc;
  for (int i = 0; i < 60; ++i) abc += i % 7 ? "ab" : "abc";
  texts.push_back(abc + " " + abc + "\n\n\n\n\n\n\n");
  std::mt19937 rng(5);
  for (int i = 0; i < 300; ++i) {
    std::string text;
    for (int k = int(rng() % 12); k >= 0; --k) text += fragments[rng() % fragments.size()];
    texts.push_back(text);
  }
  return texts;
}

// A suite (Suite: the derived class, so that each has its own) whose tokenizer the reference's
// `mode` (make, make-llama3) writes once, with `seed` and 400 merges, from bpe_texts().
template <class Suite>
class ReferenceBpeSuite : public ::testing::Test {
 protected:
  static void make(const std::string& name, const std::string& mode, int seed) {
    dir_ = std::make_unique<ScratchDir>(name);
    texts_ = bpe_texts();
    write_json(dir_->file("texts.json"), texts_);
    run_python_script("byte_bpe_reference.py", mode + " " + dir_->file("") + " " +
                                                   std::to_string(seed) + " 400 " +
                                                   dir_->file("texts.json"));
    tokenizer_ = data::LmTokenizer::load_dir(dir_->file(""));
  }
  // Each text's ids against the reference's (which reads the files make wrote); each_id sees
  // every id.
  static void expect_reference_ids(const std::function<void(int32_t)>& each_id) {
    run_python_script(
        "byte_bpe_reference.py",
        "encode " + dir_->file("") + " " + dir_->file("texts.json") + " " + dir_->file("ids.json"));
    auto expected = read_json(dir_->file("ids.json"));
    ASSERT_EQ(expected.size(), texts_.size());
    for (size_t i = 0; i < texts_.size(); ++i) {
      auto ids = tokenizer_->encode(texts_[i]);
      EXPECT_EQ(ids, expected[i].get<std::vector<int32_t>>())
          << "text " << i << ": " << nlohmann::json(texts_[i]).dump();
      for (int32_t id : ids) each_id(id);
    }
  }
  static void TearDownTestSuite() {
    tokenizer_.reset();
    dir_.reset();
  }
  static inline std::unique_ptr<ScratchDir> dir_;
  static inline std::vector<std::string> texts_;
  static inline std::unique_ptr<data::LmTokenizer> tokenizer_;
};

}  // namespace qkv::test
