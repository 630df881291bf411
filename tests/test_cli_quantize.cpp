// `qkv quantize` and --compute-type, run as the built binary on random model directories: the
// int8 directory is about 4x smaller and loads everywhere, its scores stay near f32's, and bad
// input gets one clear line.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "io/safetensors.h"
#include "support/cli_run.h"
#include "support/random_model_dirs.h"

namespace qkv::test {
namespace {

namespace fs = std::filesystem;

// log-probabilities of `qkv score` output ("log_prob\ttokens" per line).
std::vector<double> log_probs(const CliResult& r) {
  std::vector<double> out;
  for (const std::string& line : lines_of(r.out)) out.push_back(std::stod(line));
  return out;
}

class CliQuantize : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new std::string(temp_path("cli_quantize"));
    fs::remove_all(*root_);
    write_random_translation_dir(*root_ + "/model", 21);
    std::string pairs;  // 10 pairs short enough for the model's 64 positions
    for (size_t i = 0, n = 0; n < 10; ++i) {
      const std::string &src = bible_dev().src[i], &tgt = bible_dev().tgt[i];
      if (src.empty() || tgt.empty() || src.size() > 80 || tgt.size() > 80) continue;
      pairs += "v" + std::to_string(n++) + "\t" + src + "\t" + tgt + "\n";
    }
    std::ofstream(*root_ + "/pairs.tsv") << pairs;
  }
  static std::string root() { return *root_; }
  static std::string* root_;
};
std::string* CliQuantize::root_ = nullptr;

TEST_F(CliQuantize, WritesASmallerDirectoryThatScoresNearF32) {
  std::string model = root() + "/model", q8 = root() + "/q8";
  fs::remove_all(q8);
  CliResult r = run_qkv("quantize --model-dir " + model + " --to " + q8);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(fs::exists(q8 + "/config.yaml") && fs::exists(q8 + "/spm.model"));
  EXPECT_FALSE(fs::exists(q8 + "/model.best.safetensors"));
  double before = double(fs::file_size(model + "/model.safetensors"));
  double after = double(fs::file_size(q8 + "/model.safetensors"));
  // 4x less for the matrices; this tiny model's biases and norms (f32) weigh more than a real
  // model's (the demo's: 30.4 MB -> 7.8 MB).
  EXPECT_LT(after, 0.4 * before) << before << " -> " << after;
  for (const auto& e : read_safetensors_header(q8 + "/model.safetensors").entries)
    if (e.name.ends_with(".weight") && e.shape.size() == 2) {
      EXPECT_EQ(e.dtype, DType::i8) << e.name;
    }

  std::string pairs = " -i " + root() + "/pairs.tsv --threads 1";
  CliResult f32 = run_qkv("score --model-dir " + model + pairs);
  CliResult int8 = run_qkv("score --model-dir " + model + " --compute-type int8" + pairs);
  CliResult quantized = run_qkv("score --model-dir " + q8 + pairs);  // int8 by default
  CliResult quantized_f32 = run_qkv("score --model-dir " + q8 + " --compute-type f32" + pairs);
  for (const CliResult* c : {&f32, &int8, &quantized, &quantized_f32})
    ASSERT_EQ(c->status, 0) << c->err;
  std::vector<double> want = log_probs(f32);
  ASSERT_EQ(want.size(), 10u);
  for (const CliResult* c : {&int8, &quantized, &quantized_f32}) {
    std::vector<double> got = log_probs(*c);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_NEAR(got[i], want[i], 0.03 * std::fabs(want[i]));
  }
  // The int8 products of the original weights are those of the quantized directory up to the
  // embeddings (quantized there, f32 here), so the two differ, and f32 on int8 weights too.
  EXPECT_NE(quantized.out, quantized_f32.out);

  CliResult translated = run_qkv("translate --model-dir " + q8 + " --beam 2 --threads 1",
                                 "Y dijo Dios\n\nSea la luz\n");
  ASSERT_EQ(translated.status, 0) << translated.err;
  EXPECT_EQ(lines_of(translated.out).size(), 3u);
}

TEST_F(CliQuantize, BadInputGetsOneClearLine) {
  std::string model = root() + "/model", once = root() + "/once";
  fs::remove_all(once);
  ASSERT_EQ(run_qkv("quantize --model-dir " + model + " --to " + once).status, 0);
  struct Case {
    std::string args, reason;
  };
  std::vector<Case> cases = {
      {"quantize --model-dir " + model + " --to " + once, "exists already"},
      {"quantize --model-dir " + once + " --to " + root() + "/twice", "is int8 already"},
      {"quantize --model-dir " + root() + " --to " + root() + "/x", "not a qkv model directory"},
      {"quantize --model-dir " + model + " --to " + root() + "/x --type int4", "--type"},
      {"score --model-dir " + model + " --compute-type int4 -i " + root() + "/pairs.tsv",
       "--compute-type"},
  };
  for (const Case& c : cases) {
    CliResult r = run_qkv(c.args, "hola\n");
    EXPECT_NE(r.status, 0) << c.args;
    EXPECT_NE(r.err.find(c.reason), std::string::npos) << c.args << ": " << r.err;
  }
  EXPECT_FALSE(fs::exists(root() + "/twice"));
  EXPECT_FALSE(fs::exists(root() + "/x"));
  for (const auto& e : fs::directory_iterator(root()))
    EXPECT_EQ(e.path().filename().string().find(".partial-"), std::string::npos) << e.path();

  // A kernel choice the CPU cannot honour is refused by name, not run slower or wrong.
  setenv("QKV_CPU_ISA", "avx9000", 1);
  CliResult r = run_qkv("translate --model-dir " + model + " --compute-type int8", "hola\n");
  unsetenv("QKV_CPU_ISA");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("QKV_CPU_ISA"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace qkv::test
