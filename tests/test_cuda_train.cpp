// The training loop on cuda (`device: cuda`): batches, gradient norm and clipping, Adam,
// checkpoints written from device tensors and read back, metrics. 6 updates of a tiny model
// on cuda log the same losses and gradient norms as on the CPU (1e-3 relative: the two
// devices round differently and 6 Adam steps compound it), and a run stopped at 3 and
// resumed equals an unbroken one. Skipped in builds without CUDA
// (fails in one with CUDA but no device).
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "io/safetensors.h"
#include "support/cuda_compare.h"
#include "support/torch_ref.h"
#include "train/trainer.h"

namespace qkv::test {
namespace {

namespace fs = std::filesystem;

// 200 pairs of made-up sentences (written here: the tests also run on a GPU machine where the
// repository sits elsewhere than where it was built).
std::string synthetic_corpus() {
  std::string path = temp_path("cuda-synthetic.tsv");
  if (fs::exists(path)) return path;
  const std::vector<std::string> es = {"el",   "la",     "casa",  "perro", "gato",   "come",
                                       "bebe", "agua",   "pan",   "rojo",  "grande", "noche",
                                       "sol",  "camino", "libro", "niño",  "madre",  "ciudad"};
  const std::vector<std::string> en = {"the",    "a",     "house", "dog",   "cat",    "eats",
                                       "drinks", "water", "bread", "red",   "big",    "night",
                                       "sun",    "road",  "book",  "child", "mother", "city"};
  std::mt19937 rng(41);
  std::ofstream out(path);
  for (int i = 0; i < 200; ++i) {
    std::string src, tgt;
    for (int w = 0, n = 3 + int(rng() % 8); w < n; ++w) {
      size_t word = rng() % es.size();
      src += (w ? " " : "") + es[word];
      tgt += (w ? " " : "") + en[word];
    }
    out << "ref\t" << src << "\t" << tgt << "\n";
  }
  return path;
}

train::TrainConfig tiny_cuda_training(const std::string& name, const std::string& device) {
  train::TrainConfig c;
  c.model_dir = temp_path(name);
  fs::remove_all(c.model_dir);
  c.device = device;
  c.train_sets = {synthetic_corpus()};
  c.model.d_model = 32, c.model.heads = 2, c.model.d_ff = 64;
  c.model.encoder_layers = 1, c.model.decoder_layers = 1;
  c.model.vocab_size = 60, c.batch_tokens = 200, c.max_length = 30;
  c.warmup_steps = 5, c.learning_rate = 1e-3, c.dropout = 0.1f, c.clip_norm = 1.f;
  c.disp_freq = 2, c.save_freq = 3, c.valid_freq = 1000, c.threads = 2;
  return c;
}

// The (loss, grad_norm) of each logged update.
std::vector<std::pair<double, double>> logged_updates(const std::string& model_dir) {
  std::vector<std::pair<double, double>> out;
  std::ifstream in(model_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j["event"] == "update") out.emplace_back(j["loss"], j["grad_norm"]);
  }
  return out;
}

TEST(CudaTrain, LossesFollowTheCpuAndAResumedRunEqualsAnUnbrokenOne) {
  QKV_SKIP_WITHOUT_CUDA();
  train::TrainConfig cpu = tiny_cuda_training("train-cpu", "cpu");
  train::TrainConfig cuda = tiny_cuda_training("train-cuda", "cuda");
  cpu.max_updates = cuda.max_updates = 6;
  EXPECT_EQ(train::train_seq2seq(cpu), 6);
  EXPECT_EQ(train::train_seq2seq(cuda), 6);
  auto want = logged_updates(cpu.model_dir), got = logged_updates(cuda.model_dir);
  ASSERT_EQ(got.size(), 3u);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(got[i].first, want[i].first, 1e-3 * want[i].first) << "loss, log line " << i;
    EXPECT_NEAR(got[i].second, want[i].second, 1e-3 * want[i].second) << "gNorm, log line " << i;
  }

  train::TrainConfig broken = tiny_cuda_training("train-cuda-broken", "cuda");
  broken.max_updates = 3;
  EXPECT_EQ(train::train_seq2seq(broken), 3);
  broken.max_updates = 6;
  EXPECT_EQ(train::train_seq2seq(broken), 6);
  auto a = load_safetensors(cuda.model_dir + "/model.safetensors");
  auto b = load_safetensors(broken.model_dir + "/model.safetensors");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(close_normwise(b[i].second, a[i].second, 1e-6)) << a[i].first;
  }
}

}  // namespace
}  // namespace qkv::test
