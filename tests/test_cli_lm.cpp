// The language-model commands as a user runs them: qkv train-lm, generate, eval and score on a
// small model trained here, and their answers to bad input (exit 1, one line naming the value).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "data/lm_text.h"
#include "support/cli_run.h"

namespace qkv::test {
namespace {

namespace fs = std::filesystem;

const std::string& text_file() {
  static std::string path = [] {
    std::string p = temp_path("lm-cli-text.txt");
    data::DocumentCorpus c =
        data::read_documents(std::string(QKV_SOURCE_DIR) + "/data/bible.es-en.dev.tsv.xz", {"", 3});
    std::ofstream out(p);
    for (size_t i = 0; i < 300; ++i) out << c.documents[i] << "\n";
    return p;
  }();
  return path;
}

// A small model trained for a few updates (once per test binary).
const std::string& model_dir() {
  static std::string dir = [] {
    std::string d = temp_path("lm-cli-model");
    fs::remove_all(d);
    CliResult r = run_qkv("train-lm --model-dir " + d + " --train-sets " + text_file() +
                          " --valid-sets " + text_file() +
                          " --tokenizer sentencepiece --vocab-size 400 --context-length 32"
                          " --d-model 32 --layers 1 --heads 2 --batch-size 4 --max-updates 8"
                          " --valid-freq 8 --sample-tokens 8 --threads 2");
    EXPECT_EQ(r.status, 0) << r.err;
    return d;
  }();
  return dir;
}

TEST(CliLm, GenerateWithASeedGivesTheSameTextTwice) {
  std::string args = "generate --model-dir " + model_dir() +
                     " --prompt 'And God said' --max-new-tokens 20 --seed 7 --top-k 40";
  CliResult a = run_qkv(args), b = run_qkv(args);
  ASSERT_EQ(a.status, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.out.rfind("And God said", 0), 0u) << "the prompt comes first: " << a.out;
  CliResult other = run_qkv(args + " --seed 8");
  EXPECT_NE(other.out, a.out) << "another seed gave the same 20 tokens";
}

TEST(CliLm, PromptsFileGivesOneJsonLinePerPromptAndSample) {
  std::string prompts = temp_path("lm-prompts.txt");
  std::ofstream(prompts) << "In the beginning\n\nThe Lord\n";
  CliResult r = run_qkv("generate --model-dir " + model_dir() + " --prompts " + prompts +
                        " --num-samples 2 --max-new-tokens 6 --temperature 0");
  ASSERT_EQ(r.status, 0) << r.err;
  auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 6u) << r.out;
  for (size_t i = 0; i < lines.size(); ++i) {
    auto j = nlohmann::json::parse(lines[i]);
    EXPECT_EQ(j.at("sample"), i % 2);
    EXPECT_LE(j.at("new_tokens").get<int>(), 6);
  }
  // Greedy: both samples of a prompt are the same.
  EXPECT_EQ(nlohmann::json::parse(lines[0]).at("text"), nlohmann::json::parse(lines[1]).at("text"));
}

TEST(CliLm, EvalAndScoreOnText) {
  CliResult e = run_qkv("eval --model-dir " + model_dir() + " --test " + text_file() + " --json");
  ASSERT_EQ(e.status, 0) << e.err;
  auto j = nlohmann::json::parse(e.out);
  EXPECT_GT(j.at("perplexity").get<double>(), 1.0);
  EXPECT_GT(j.at("bits_per_character").get<double>(), 0.0);
  std::string input = temp_path("lm-score.txt");
  std::ofstream(input) << "In the beginning\nx\nGod\n";
  CliResult s = run_qkv("score --model-dir " + model_dir() + " --input " + input);
  ASSERT_EQ(s.status, 0) << s.err;
  ASSERT_EQ(lines_of(s.out).size(), 3u) << s.out;
  double log_prob = 0;
  long long count = 0;
  ASSERT_EQ(std::sscanf(lines_of(s.out)[0].c_str(), "%lf\t%lld", &log_prob, &count), 2);
  EXPECT_LT(log_prob, 0.0);
  EXPECT_GT(count, 0);
}

void expect_error(const CliResult& r, const std::string& text) {
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.err.find(text), std::string::npos) << r.err;
  EXPECT_EQ(lines_of(r.err).size(), 1u) << r.err;
}

TEST(CliLm, BadInputIsNamed) {
  std::string gen = "generate --model-dir " + model_dir() + " ";
  expect_error(run_qkv(gen + "--prompt x --top-p 0"), "top-p");
  expect_error(run_qkv(gen + "--prompt x --temperature -1"), "temperature");
  expect_error(run_qkv(gen + "--prompt \"$(printf '\\377\\376abc')\""), "UTF-8");
  expect_error(run_qkv(gen + "--prompt x --max-new-tokens 0"), "max-new-tokens");
  std::string empty = temp_path("lm-empty.txt"), dir = temp_path("lm-cli-empty");
  std::ofstream(empty).close();
  fs::remove_all(dir);
  expect_error(run_qkv("train-lm --model-dir " + dir + " --train-sets " + empty), empty);
  EXPECT_FALSE(fs::exists(dir)) << "a run without data wrote its folder";
  expect_error(run_qkv("train-lm --model-dir " + dir + " --train-sets " + text_file() +
                       " --context-length 0"),
               "context-length");
}

}  // namespace
}  // namespace qkv::test
