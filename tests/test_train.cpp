// Training: a resumed run equals an unbroken one bit for bit (and keeps a max-time schedule's
// length and the weight average of ema-decay, which validation measures), a run killed after it
// wrote a checkpoint (often while writing the next) resumes from its last complete checkpoint, and
// bad configuration gives clear errors.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "decode/score.h"
#include "model_dir/seq2seq_dir.h"
#include "support/bible_subset.h"
#include "support/torch_ref.h"
#include "support/training_checks.h"
#include "train/trainer.h"

namespace qkv::test {
namespace {

namespace fs = std::filesystem;

train::TrainConfig tiny_training(const std::string& dir) {
  train::TrainConfig c;
  c.model_dir = dir;
  c.train_sets = {bible_pairs(300)};
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

  expect_same_weights(straight.model_dir, broken.model_dir);
}

// The text of the last {"event": "resume"} line of <dir>/metrics.jsonl ("" if none).
std::string last_resume_note(const std::string& dir) {
  std::ifstream in(dir + "/metrics.jsonl");
  std::string line, text;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.value("event", "") == "resume") text = j.value("text", "");
  }
  return text;
}

// The newest checkpoint's folder.
std::string newest_state(const std::string& model_dir) {
  std::ifstream latest_file(model_dir + "/checkpoint/latest");
  std::string latest;
  std::getline(latest_file, latest);
  return model_dir + "/checkpoint/" + latest;
}

// The newest checkpoint's progress.json.
std::string progress_path(const std::string& model_dir) {
  return newest_state(model_dir) + "/progress.json";
}

// With ema-decay the checkpoint keeps the average beside the weights, model.safetensors
// publishes the average (not the weights), and a resumed run equals an unbroken one in both.
TEST(Train, WeightAverageIsPublishedAndResumesExactly) {
  train::TrainConfig straight = tiny_training(fresh_dir("average-straight"));
  straight.ema_decay = 0.99, straight.max_updates = 40;
  EXPECT_EQ(train::train_seq2seq(straight), 40);
  train::TrainConfig broken = straight;
  broken.model_dir = fresh_dir("average-broken"), broken.max_updates = 20;
  EXPECT_EQ(train::train_seq2seq(broken), 20);
  broken.max_updates = 40;
  EXPECT_EQ(train::train_seq2seq(broken), 40);

  std::string state = newest_state(straight.model_dir);
  expect_same_tensors(straight.model_dir + "/model.safetensors", state + "/average.safetensors");
  expect_same_weights(straight.model_dir, broken.model_dir);
  expect_same_tensors(state + "/model.safetensors",
                      newest_state(broken.model_dir) + "/model.safetensors");
  NamedTensors average = load_safetensors(state + "/average.safetensors"),
               weights = load_safetensors(state + "/model.safetensors");
  ASSERT_EQ(average.size(), weights.size());
  EXPECT_NE(
      std::memcmp(average[0].second.raw(), weights[0].second.raw(), weights[0].second.nbytes()), 0)
      << "the average equals the weights after 40 updates";
}

// With ema-decay, validation measures the average that model.safetensors publishes: the logged
// loss is the published model's forced-decoding loss on the validation pairs, and the trained
// weights' (the checkpoint's) differs.
TEST(Train, ValidationMeasuresTheWeightAverage) {
  train::TrainConfig c = tiny_training(fresh_dir("average-valid"));
  c.valid_sets = {bible_pairs(40)};
  c.max_length = 400;  // no validation sentence cut
  c.ema_decay = 0.9, c.max_updates = 20, c.valid_freq = 20;
  train::train_seq2seq(c);
  double logged = last_valid_loss(c.model_dir);
  data::ParallelCorpus pairs = data::read_tsv(bible_pairs(40));
  auto loss_of = [&](const std::string& dir) {
    model_dir::TranslationModel m = model_dir::load_translation_dir(dir, "last");
    double log_prob = 0, tokens = 0;
    for (const auto& s : decode::score_pairs(*m.model, *m.tokenizer, pairs.src, pairs.tgt, 2000))
      log_prob += s.log_prob, tokens += double(s.tokens);
    return -log_prob / tokens;
  };
  EXPECT_NEAR(loss_of(c.model_dir), logged, 1e-5 * logged);

  std::string trained = fresh_dir("average-valid-trained");
  fs::copy(c.model_dir, trained, fs::copy_options::recursive);
  fs::copy_file(c.model_dir + "/checkpoint/state-20/model.safetensors",
                trained + "/model.safetensors", fs::copy_options::overwrite_existing);
  EXPECT_GT(std::abs(loss_of(trained) - logged), 1e-3 * logged);
}

// A run that turns ema-decay on while resuming a checkpoint without an average starts the
// average from the resumed weights and says so.
TEST(Train, WeightAverageStartsFromAResumedRunWithoutOne) {
  train::TrainConfig c = tiny_training(fresh_dir("average-late"));
  c.max_updates = 20;
  train::train_seq2seq(c);
  c.ema_decay = 0.99, c.max_updates = 30;
  EXPECT_EQ(train::train_seq2seq(c), 30);
  EXPECT_NE(last_resume_note(c.model_dir).find("holds no weight average"), std::string::npos)
      << last_resume_note(c.model_dir);
  EXPECT_TRUE(fs::exists(newest_state(c.model_dir) + "/average.safetensors"));
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

// The update that <dir>/checkpoint/latest names (state-<update>), or -1 while it names none.
int64_t latest_checkpoint(const std::string& dir) {
  std::ifstream latest(dir + "/checkpoint/latest");
  std::string name;
  if (!(latest >> name) || name.rfind("state-", 0) != 0) return -1;
  return std::stoll(name.substr(6));
}

// Each attempt runs `qkv train` with a checkpoint every update, waits until it has written a
// checkpoint past the one it started from (so each run resumed and got somewhere, however
// loaded the machine), then kills it: by then it is usually inside the next checkpoint write.
TEST(Train, KilledRunsResumeFromTheLastCompleteCheckpoint) {
  std::string dir = fresh_dir("killed");
  train::TrainConfig c = tiny_training(dir);
  c.max_updates = 20;
  train::train_seq2seq(c);  // tokenizer and a first checkpoint
  ASSERT_EQ(latest_checkpoint(dir), 20);
  std::string yaml = temp_path("killed.yaml");
  {
    Options o;
    c.bind(o);
    std::ofstream(yaml) << o.to_yaml();
  }
  for (int attempt = 0; attempt < 3; ++attempt) {
    const int64_t before = latest_checkpoint(dir);
    pid_t pid = fork();
    if (pid == 0) {
      freopen("/dev/null", "w", stderr);
      execl(QKV_BINARY, QKV_BINARY, "train", "--config", yaml.c_str(), "--save-freq", "1",
            "--max-updates", "100000", (char*)nullptr);
      _exit(127);
    }
    int status = 0;
    bool exited = false;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
    while (latest_checkpoint(dir) <= before && std::chrono::steady_clock::now() < deadline) {
      if (waitpid(pid, &status, WNOHANG) == pid) {
        exited = true;
        break;
      }
      usleep(2000);
    }
    if (!exited) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
    }
    ASSERT_TRUE(WIFSIGNALED(status)) << "qkv train ended before it was killed, attempt " << attempt;
    ASSERT_GT(latest_checkpoint(dir), before)
        << "no checkpoint past update " << before << " within 5 minutes, attempt " << attempt;
    EXPECT_EQ(last_resume_note(dir).rfind("resuming from update " + std::to_string(before), 0), 0u)
        << "attempt " << attempt << " did not resume from update " << before << ": "
        << last_resume_note(dir);
  }
  // The last complete checkpoint loads, and training goes on from it.
  const int64_t at = latest_checkpoint(dir);
  ASSERT_GE(at, 23);
  c.max_updates = at + 3;
  EXPECT_EQ(train::train_seq2seq(c), at + 3);
  EXPECT_EQ(last_resume_note(dir).rfind("resuming from update " + std::to_string(at), 0), 0u)
      << last_resume_note(dir);
  EXPECT_EQ(latest_checkpoint(dir), at + 3);
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
  train::TrainConfig decay = tiny_training(fresh_dir("bad-decay"));
  decay.ema_decay = 1;
  EXPECT_NE(error_of([&] { decay.validate(); }).find("ema-decay must be 0 (off) or in (0, 1)"),
            std::string::npos);
  EXPECT_THROW(o.load_yaml(temp_path("missing.yaml")), std::runtime_error);
  train::TrainConfig bad = tiny_training(fresh_dir("bad"));
  bad.train_sets = {temp_path("no-such-corpus.tsv")};
  EXPECT_THROW(train::train_seq2seq(bad), std::runtime_error);
}

// device: cuda where no GPU can run it fails before anything is written. In builds without
// CUDA only (a build with CUDA has test_cuda_train).
#ifndef QKV_WITH_CUDA
TEST(Train, CudaWithoutAGpuFailsAtOnce) {
  ASSERT_EQ(cuda_device_count(), 0) << "a CUDA device in a build without CUDA";
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
#endif

}  // namespace
}  // namespace qkv::test
