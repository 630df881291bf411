// `qkv train-lm` in process: a resumed run equals an unbroken one bit for bit, validation logs
// perplexity, bits per character and a sample and measures the weight average, a config
// without its key options is refused with names, and the trained model directory loads for
// generation.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/lm_text.h"
#include "eval/lm_eval.h"
#include "model_dir/gpt_dir.h"
#include "support/torch_ref.h"
#include "support/training_checks.h"
#include "train/lm_trainer.h"

namespace qkv::test {
namespace {

namespace fs = std::filesystem;

// The English side of the first `n` dev pairs, one verse per line.
std::string read_text(const std::string& path) {
  std::stringstream ss;
  ss << std::ifstream(path).rdbuf();
  return ss.str();
}

std::string small_text(size_t n) {
  std::string path = temp_path("lm_small.txt");
  if (fs::exists(path)) return path;
  data::DocumentCorpus c =
      data::read_documents(std::string(QKV_SOURCE_DIR) + "/data/bible.es-en.dev.tsv.xz", {"", 3});
  std::ofstream out(path);
  for (size_t i = 0; i < n; ++i) out << c.documents[i] << "\n";
  return path;
}

train::LmTrainConfig tiny(const std::string& name, const std::string& tokenizer) {
  train::LmTrainConfig c;
  c.model_dir = temp_path(name);
  fs::remove_all(c.model_dir);
  c.train_sets = {small_text(300)};
  c.tokenizer = tokenizer, c.vocab_size = 400;  // 256 byte pieces and the characters
  c.model.context_length = 24, c.model.d_model = 32, c.model.layers = 2, c.model.heads = 2;
  c.batch_size = 4, c.warmup_steps = 5, c.dropout = 0.1f;
  c.lr_schedule = "inverse-sqrt";  // cosine would decay over each run's max-updates
  c.disp_freq = 5, c.save_freq = 10, c.valid_freq = 1000, c.threads = 2;
  c.sample_tokens = 0;
  return c;
}

TEST(LmTrain, ResumedRunEqualsUnbrokenRun) {
  for (const char* tokenizer : {"chars", "sentencepiece"}) {
    train::LmTrainConfig straight = tiny(std::string("lm_straight_") + tokenizer, tokenizer);
    straight.max_updates = 20;
    EXPECT_EQ(train::train_lm(straight), 20);
    train::LmTrainConfig broken = tiny(std::string("lm_broken_") + tokenizer, tokenizer);
    broken.max_updates = 10;
    EXPECT_EQ(train::train_lm(broken), 10);
    broken.max_updates = 20;
    EXPECT_EQ(train::train_lm(broken), 20);
    expect_same_weights(straight.model_dir, broken.model_dir);
  }
}

TEST(LmTrain, ValidationLogsPerplexityBitsPerCharacterAndASample) {
  train::LmTrainConfig c = tiny("lm_valid", "chars");
  // Validation text with characters the training text lacks: the chars tokenizer has them.
  std::string valid = temp_path("lm_valid.txt");
  std::ofstream(valid) << read_text(small_text(300)) << "Zürich ¿¡ 東京\n";
  c.valid_sets = {valid};
  c.max_updates = 10, c.valid_freq = 5, c.sample_tokens = 12, c.sample_prompt = "And God";
  c.valid_max_tokens = 3000;
  train::train_lm(c);
  std::stringstream metrics;
  metrics << std::ifstream(c.model_dir + "/metrics.jsonl").rdbuf();
  EXPECT_NE(metrics.str().find("\"perplexity\""), std::string::npos) << metrics.str();
  EXPECT_NE(metrics.str().find("\"bpc\""), std::string::npos) << metrics.str();
  EXPECT_NE(metrics.str().find("And God"), std::string::npos) << "no sample in the log";
  // The lower loss is the better: the first validation is the best so far.
  EXPECT_TRUE(fs::exists(c.model_dir + "/model.best.safetensors"));
  EXPECT_EQ(metrics.str().find("\"stalled\": 2"), std::string::npos) << metrics.str();
  model_dir::LanguageModel m = model_dir::load_language_model_dir(c.model_dir);
  EXPECT_EQ(m.tokenizer->type(), "chars");
  EXPECT_EQ(m.model->config().context_length, 24);
}

// With ema-decay, validation measures the moving average that model.safetensors publishes, not
// the trained weights (the checkpoint's), whose loss differs.
TEST(LmTrain, ValidationMeasuresTheWeightAverage) {
  train::LmTrainConfig c = tiny("lm_average", "chars");
  c.valid_sets = {small_text(300)};
  c.valid_max_tokens = 0;  // all of it
  c.ema_decay = 0.9, c.max_updates = 20, c.valid_freq = 20;
  train::train_lm(c);
  double logged = last_valid_loss(c.model_dir);
  std::vector<std::string> documents = data::read_documents(c.valid_sets[0], {"", 0}).documents;
  auto loss_of = [&](const std::string& dir) {
    model_dir::LanguageModel m = model_dir::load_language_model_dir(dir, "last");
    return eval::evaluate_lm(*m.model, *m.tokenizer, documents, c.batch_size).loss;
  };
  EXPECT_NEAR(loss_of(c.model_dir), logged, 1e-6 * logged);

  std::string trained = temp_path("lm_average_trained");
  fs::remove_all(trained);
  fs::copy(c.model_dir, trained, fs::copy_options::recursive);
  fs::copy_file(c.model_dir + "/checkpoint/state-20/model.safetensors",
                trained + "/model.safetensors", fs::copy_options::overwrite_existing);
  EXPECT_GT(std::abs(loss_of(trained) - logged), 1e-3 * logged);
}

TEST(LmTrain, BadOptionsAreNamed) {
  auto fails_with = [](train::LmTrainConfig c, const std::string& text) {
    try {
      train::train_lm(c);
      ADD_FAILURE() << "accepted: " << text;
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  train::LmTrainConfig c = tiny("lm_bad", "chars");
  auto with = [&](auto edit) {
    train::LmTrainConfig copy = c;
    edit(copy);
    return copy;
  };
  fails_with(with([](auto& x) { x.model.context_length = 0; }), "context-length");
  fails_with(with([](auto& x) { x.tokenizer = "words"; }), "'words'");
  fails_with(with([](auto& x) { x.batch_size = 0; }), "batch-size");
  fails_with(with([](auto& x) { x.bias = "maybe"; }), "'maybe'");
  std::string empty = temp_path("lm_empty.txt");
  std::ofstream(empty).close();
  fails_with(with([&](auto& x) { x.train_sets = {empty}; }), empty);
  EXPECT_FALSE(fs::exists(c.model_dir + "/config.yaml")) << "a failed start wrote a model";
}

}  // namespace
}  // namespace qkv::test
