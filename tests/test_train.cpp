// Training: a resumed run equals an unbroken one bit for bit (and keeps a max-time schedule's
// length), a run killed at any moment (also while writing a checkpoint) resumes from its last
// complete checkpoint, and bad configuration gives clear errors.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data/corpus.h"
#include "io/safetensors.h"
#include "support/torch_ref.h"
#include "train/trainer.h"

namespace qkv::test {
namespace {

namespace fs = std::filesystem;

// The first `n` pairs of the bundled training corpus as a small TSV file.
std::string small_corpus(size_t n) {
  std::string path = temp_path("small.tsv");
  if (fs::exists(path)) return path;
  data::ParallelCorpus c =
      data::read_tsv(std::string(QKV_SOURCE_DIR) + "/data/bible.es-en.train.tsv.xz");
  std::ofstream out(path);
  for (size_t i = 0; i < n; ++i) out << "ref\t" << c.src[i] << "\t" << c.tgt[i] << "\n";
  return path;
}

train::TrainConfig tiny_training(const std::string& dir) {
  train::TrainConfig c;
  c.model_dir = dir;
  c.train_sets = {small_corpus(300)};
  c.model.d_model = 32, c.model.heads = 2, c.model.d_ff = 64;
  c.model.encoder_layers = 1, c.model.decoder_layers = 1;
  c.model.vocab_size = 300, c.batch_tokens = 400, c.max_length = 60;
  c.warmup_steps = 10, c.learning_rate = 1e-3, c.dropout = 0.1f;
  c.disp_freq = 10, c.save_freq = 20, c.valid_freq = 1000, c.threads = 2;
  return c;
}

std::string fresh_dir(const std::string& name) {
  std::string dir = temp_path(name);
  fs::remove_all(dir);
  return dir;
}

TEST(Train, ResumedRunEqualsUnbrokenRun) {
  train::TrainConfig straight = tiny_training(fresh_dir("straight"));
  straight.max_updates = 40;
  EXPECT_EQ(train::train_seq2seq(straight), 40);

  train::TrainConfig broken = tiny_training(fresh_dir("broken"));
  broken.max_updates = 20;
  EXPECT_EQ(train::train_seq2seq(broken), 20);
  broken.max_updates = 40;
  EXPECT_EQ(train::train_seq2seq(broken), 40);

  auto a = load_safetensors(straight.model_dir + "/model.safetensors");
  auto b = load_safetensors(broken.model_dir + "/model.safetensors");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].first, b[i].first);
    ASSERT_EQ(a[i].second.nbytes(), b[i].second.nbytes());
    EXPECT_EQ(std::memcmp(a[i].second.raw(), b[i].second.raw(), a[i].second.nbytes()), 0)
        << a[i].first << " differs after resuming";
  }
}

// The newest checkpoint's progress.json.
std::string progress_path(const std::string& model_dir) {
  std::ifstream latest_file(model_dir + "/checkpoint/latest");
  std::string latest;
  std::getline(latest_file, latest);
  return model_dir + "/checkpoint/" + latest + "/progress.json";
}

nlohmann::json read_progress(const std::string& model_dir) {
  return nlohmann::json::parse(std::ifstream(progress_path(model_dir)));
}

// A translation run resumed with max-time keeps the cosine schedule's length that the
// checkpoint recorded (tests/test_train_vit.cpp checks the learning rates too).
TEST(Train, ResumedMaxTimeRunKeepsTheScheduleLength) {
  train::TrainConfig c = tiny_training(fresh_dir("max_time"));
  c.lr_schedule = "cosine", c.warmup_steps = 2, c.max_time = 0.02;  // 1.2 s
  c.save_freq = 100000;
  const int64_t first = train::train_seq2seq(c);
  ASSERT_GE(first, 1);
  EXPECT_EQ(read_progress(c.model_dir).at("schedule_updates"), first);

  // As a run killed 4 updates before the end of its schedule leaves its checkpoint.
  nlohmann::json progress = read_progress(c.model_dir);
  progress["schedule_updates"] = first + 4;
  std::ofstream(progress_path(c.model_dir)) << progress.dump(2) << "\n";
  c.max_time = 0.2;  // 12 s, far more than 4 updates
  EXPECT_EQ(train::train_seq2seq(c), first + 4);
  EXPECT_EQ(read_progress(c.model_dir).at("schedule_updates"), first + 4);
}

TEST(Train, LeftoversOfAKilledCheckpointWriteAreIgnored) {
  train::TrainConfig c = tiny_training(fresh_dir("leftovers"));
  c.max_updates = 20;
  train::train_seq2seq(c);
  // What a kill during the next checkpoint would leave: a half-written state folder and
  // temporary files beside the real ones.
  fs::create_directories(c.model_dir + "/checkpoint/.tmp-state-40");
  std::ofstream(c.model_dir + "/checkpoint/.tmp-state-40/model.safetensors") << "partial";
  std::ofstream(c.model_dir + "/checkpoint/latest.tmp.12345") << "state-40";
  std::ofstream(c.model_dir + "/model.safetensors.tmp") << "partial";
  c.max_updates = 30;
  EXPECT_EQ(train::train_seq2seq(c), 30);
}

TEST(Train, KilledRunsResumeFromTheLastCompleteCheckpoint) {
  std::string dir = fresh_dir("killed");
  train::TrainConfig c = tiny_training(dir);
  c.max_updates = 20;
  train::train_seq2seq(c);  // tokenizer and a first checkpoint
  std::string yaml = temp_path("killed.yaml");
  {
    Options o;
    c.bind(o);
    std::ofstream(yaml) << o.to_yaml();
  }
  Rng rng(3);
  for (int attempt = 0; attempt < 4; ++attempt) {
    pid_t pid = fork();
    if (pid == 0) {
      // A checkpoint every update, so a kill often lands inside a checkpoint write.
      freopen("/dev/null", "w", stderr);
      execl(QKV_BINARY, QKV_BINARY, "train", "--config", yaml.c_str(), "--save-freq", "1",
            "--max-updates", "100000", (char*)nullptr);
      _exit(127);
    }
    usleep(useconds_t(500000 + rng.below(1000000)));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "qkv train ended before it was killed";
  }
  // The last complete checkpoint loads, and training goes on from it.
  std::ifstream latest(dir + "/checkpoint/latest");
  std::string name;
  latest >> name;
  int64_t at = std::stoll(name.substr(name.find('-') + 1));
  c.max_updates = at + 3;
  EXPECT_EQ(train::train_seq2seq(c), at + 3);
}

TEST(Train, ConfigErrorsNameTheFileAndKey) {
  std::string path = temp_path("bad.yaml");
  std::ofstream(path) << "preset: tiny\nlearning-rat: 0.1\n";
  train::TrainConfig c;
  Options o;
  c.bind(o);
  try {
    o.load_yaml(path);
    FAIL() << "an unknown key was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(path + ":2: learning-rat: unknown key"), std::string::npos)
        << e.what();
  }
  std::ofstream(path) << "max-updates: many\n";
  EXPECT_THROW(o.load_yaml(path), std::invalid_argument);
  EXPECT_THROW(o.load_yaml(temp_path("missing.yaml")), std::runtime_error);
  train::TrainConfig bad = tiny_training(fresh_dir("bad"));
  bad.train_sets = {temp_path("no-such-corpus.tsv")};
  EXPECT_THROW(train::train_seq2seq(bad), std::runtime_error);
}

// device: cuda where no GPU can run it fails before anything is written.
TEST(Train, CudaWithoutAGpuFailsAtOnce) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is present";
  std::string dir = fresh_dir("cuda-without-gpu");
  train::TrainConfig c = tiny_training(dir);
  c.device = "cuda";
  try {
    train::train_seq2seq(c);
    FAIL() << "training started on a missing device";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("device cuda:"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir));
}

}  // namespace
}  // namespace qkv::test
