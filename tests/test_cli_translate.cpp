// The translation commands as a user runs them: qkv translate, score and eval on a small model
// trained here, and their answers to bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/corpus.h"
#include "support/cli_run.h"

namespace qkv::test {
namespace {

namespace fs = std::filesystem;

// A small model trained for a few updates (once per test binary).
const std::string& model_dir() {
  static std::string dir = [] {
    std::string d = temp_path("cli-model"), corpus = temp_path("cli-corpus.tsv");
    data::ParallelCorpus c =
        data::read_tsv(std::string(QKV_SOURCE_DIR) + "/data/bible.es-en.dev.tsv.xz");
    std::ofstream out(corpus);
    for (size_t i = 0; i < 400; ++i) out << "r\t" << c.src[i] << "\t" << c.tgt[i] << "\n";
    out.close();
    CliResult r =
        run_qkv("train --model-dir " + d + " --train-sets " + corpus + " --valid-sets " + corpus +
                " --d-model 32 --heads 2 --d-ff 64 --encoder-layers 1 --decoder-layers 1"
                " --vocab-size 300 --max-positions 40 --max-length 39 --batch-tokens 400"
                " --max-updates 6 --valid-freq 6 --valid-max-sentences 20 --threads 2");
    EXPECT_EQ(r.status, 0) << r.err;
    return d;
  }();
  return dir;
}

TEST(CliTranslate, OneOutputLinePerInputLineWhateverTheInput) {
  std::string long_line;
  for (int i = 0; i < 80; ++i) long_line += "palabra" + std::to_string(i) + " ";
  std::string input = "En el principio.\n\nY dijo Dios\xff\xfe luz.\n" + long_line + "\nfin";
  CliResult r = run_qkv("translate --model-dir " + model_dir(), input);
  ASSERT_EQ(r.status, 0) << r.err;
  auto out = lines_of(r.out);
  ASSERT_EQ(out.size(), 5u) << r.out;
  EXPECT_EQ(out[1], "") << "an empty line must give an empty line";
  EXPECT_NE(r.err.find(":3: invalid UTF-8"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("truncated"), std::string::npos) << r.err;
}

TEST(CliTranslate, NBestGivesKLinesPerSentence) {
  CliResult r =
      run_qkv("translate --model-dir " + model_dir() + " --beam 3 --n-best 2", "uno\ndos\n");
  ASSERT_EQ(r.status, 0) << r.err;
  auto out = lines_of(r.out);
  ASSERT_EQ(out.size(), 4u) << r.out;
  EXPECT_EQ(out[0].rfind("0 ||| ", 0), 0u) << out[0];
  EXPECT_EQ(out[3].rfind("1 ||| ", 0), 0u) << out[3];
}

TEST(CliTranslate, ScorePrintsOneNegativeLogProbPerPair) {
  std::string pairs = temp_path("pairs.tsv");
  std::ofstream(pairs)
      << "a\tEn el principio.\tIn the beginning.\nb\tY dijo Dios.\tAnd God said.\n";
  CliResult r = run_qkv("score --model-dir " + model_dir() + " --input " + pairs);
  ASSERT_EQ(r.status, 0) << r.err;
  auto out = lines_of(r.out);
  ASSERT_EQ(out.size(), 2u);
  for (const auto& l : out) {
    double lp = std::stod(l.substr(0, l.find('\t')));
    EXPECT_LT(lp, 0.0) << l;
    EXPECT_GT(std::stoi(l.substr(l.find('\t') + 1)), 1) << l;
  }
}

TEST(CliTranslate, EvalScoresExistingTranslationsLikeSacrebleu) {
  std::string hyps = temp_path("hyps.txt"), refs = temp_path("refs.txt");
  std::ofstream(hyps) << "The cat sat on the mat.\nHello world!\n";
  std::ofstream(refs) << "The cat sat on the mat.\nHello world!\n";
  CliResult r = run_qkv("eval --hyps " + hyps + " --refs " + refs);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0 = 100.00"),
            std::string::npos)
      << r.out;
  EXPECT_NE(
      r.out.find("chrF2|nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0 = 100.00"),
      std::string::npos)
      << r.out;
  CliResult j = run_qkv("eval --json --hyps " + hyps + " --refs " + refs);
  EXPECT_NE(j.out.find("\"bleu\": 100.0"), std::string::npos) << j.out;
}

TEST(CliTranslate, EvalTranslatesATestSet) {
  std::string test = temp_path("test.tsv");
  std::ofstream(test) << "a\tEn el principio.\tIn the beginning.\n";
  CliResult r = run_qkv("eval --model-dir " + model_dir() + " --test " + test);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("BLEU|"), std::string::npos) << r.out;
}

TEST(CliTranslate, BadModelDirectoriesGiveOneLineErrors) {
  CliResult missing = run_qkv("translate --model-dir " + temp_path("nowhere"), "hola\n");
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.err.find("no such model directory"), std::string::npos) << missing.err;

  std::string broken = temp_path("broken-model");
  fs::remove_all(broken);
  fs::copy(model_dir(), broken, fs::copy_options::recursive);
  std::string config = broken + "/config.yaml";
  std::stringstream ss;
  ss << std::ifstream(config).rdbuf();
  std::string text = ss.str();
  text.replace(text.find("vocab-size: 300"), 15, "vocab-size: 301");
  std::ofstream(config) << text;
  CliResult mismatched = run_qkv("translate --model-dir " + broken, "hola\n");
  EXPECT_EQ(mismatched.status, 1);
  EXPECT_NE(mismatched.err.find("vocab-size"), std::string::npos) << mismatched.err;

  fs::remove(broken + "/model.best.safetensors");
  fs::remove(broken + "/model.safetensors");
  CliResult no_weights = run_qkv("translate --model-dir " + broken, "hola\n");
  EXPECT_EQ(no_weights.status, 1);
}

// Where no GPU can run it (a build without CUDA, or no device), --device cuda fails at once
// with the reason; --device cpu is the default and gives the same output as no option.
TEST(CliTranslate, DeviceOptionSaysWhyCudaCannotRun) {
  CliResult cpu = run_qkv("translate --device cpu --model-dir " + model_dir(), "hola\n");
  CliResult plain = run_qkv("translate --model-dir " + model_dir(), "hola\n");
  EXPECT_EQ(cpu.status, 0) << cpu.err;
  EXPECT_EQ(cpu.out, plain.out);
  CliResult other = run_qkv("translate --device tpu --model-dir " + model_dir(), "hola\n");
  EXPECT_NE(other.status, 0);
  EXPECT_NE(other.err.find("tpu"), std::string::npos) << other.err;
#ifndef QKV_WITH_CUDA  // without CUDA, --device cuda is refused (with it, tests/test_cuda_*)
  ASSERT_EQ(cuda_device_count(), 0) << "a CUDA device in a build without CUDA";
  for (std::string cmd : {"translate", "score -i x.tsv", "eval --test x.tsv"}) {
    CliResult r = run_qkv(cmd + " --device cuda --model-dir " + model_dir(), "hola\n");
    EXPECT_EQ(r.status, 1) << cmd;
    EXPECT_NE(r.err.find("device cuda:"), std::string::npos) << cmd << ": " << r.err;
  }
#endif
}

TEST(CliConvert, HuggingFaceRoundTripTranslatesTheSame) {
  std::string hf = temp_path("cli-hf"), back = temp_path("cli-back");
  CliResult to = run_qkv("convert --from qkv " + model_dir() + " --to hf " + hf);
  ASSERT_EQ(to.status, 0) << to.err;
  EXPECT_TRUE(fs::exists(hf + "/config.json"));
  CliResult from = run_qkv("convert --from hf " + hf + " --to " + back);
  ASSERT_EQ(from.status, 0) << from.err;
  std::string input = "En el principio creó Dios los cielos y la tierra.\nY la luz.\n";
  CliResult a = run_qkv("translate --model-dir " + model_dir(), input),
            b = run_qkv("translate --model-dir " + back, input);
  ASSERT_EQ(a.status, 0) << a.err;
  ASSERT_EQ(b.status, 0) << b.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(lines_of(a.out).size(), 2u);
  // Training into the converted directory would replace its model: refused, nothing written.
  auto listing = [&] {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(back)) names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    return names;
  };
  std::vector<std::string> before = listing();
  CliResult train = run_qkv("train --model-dir " + back + " --train-sets x.tsv --max-updates 1");
  EXPECT_EQ(train.status, 1);
  EXPECT_NE(train.err.find("no training checkpoint"), std::string::npos) << train.err;
  EXPECT_EQ(listing(), before);
}

TEST(CliConvert, BadArgumentsAreNamed) {
  CliResult r =
      run_qkv("convert --from hf " + temp_path("no-such-dir") + " --to " + temp_path("x"));
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("no-such-dir/config.json: cannot open"), std::string::npos) << r.err;
  r = run_qkv("convert --from onnx a.onnx --to " + temp_path("x"));
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--from must be hf, torch or qkv"), std::string::npos) << r.err;
  r = run_qkv("convert --from torch w.safetensors --to " + temp_path("x"));
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--config"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace qkv::test
