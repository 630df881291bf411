// Data-parallel training over MPI (train/data_parallel.h), through the built `qkv` under
// Open MPI's mpirun, two ranks on this machine: two ranks update exactly as one process
// accumulating two batches in every family (bit for bit: the same batches, dropout masks and
// augmentation, and gradients summed in the same order); with accumulate on each rank too, within
// 1e-6; a killed rank stops the other (mpirun exits non-zero) and the run resumes from its last
// checkpoint to the weights of an unbroken run; an error on the ranks stops them all, naming the
// rank.
// Skipped in builds without MPI.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "support/bible_subset.h"
#include "support/cli_run.h"

namespace qkv::test {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// mpirun for n ranks of one thread on this machine: as root (CI), more ranks than cores, no
// pinning, and shared memory without the single-copy mechanism containers often forbid.
std::string mpirun(int n) {
  std::string command =
      "mpirun --allow-run-as-root --oversubscribe --bind-to none --mca "
      "btl_vader_single_copy_mechanism none -np ";
  command += std::to_string(n);
  command += " " QKV_BINARY " ";
  return command;
}

CliResult run_shell(const std::string& command) {
  std::string out = temp_path("dp.out"), err = temp_path("dp.err");
  int status = std::system((command + " > " + out + " 2> " + err + " < /dev/null").c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_text(out), read_text(err)};
}

#define SKIP_WITHOUT_MPI()                                                          \
  do {                                                                              \
    if (!mpi_built()) GTEST_SKIP() << "qkv was built without MPI (libopenmpi-dev)"; \
  } while (0)

bool mpi_built() {
#ifdef QKV_WITH_MPI
  return true;
#else
  return false;
#endif
}

std::string fresh_dir(const std::string& name) {
  std::string dir = temp_path(name);
  fs::remove_all(dir);
  return dir;
}

// Small runs of every family: dropout on, validation and checkpoints along the way.
std::string translation_run(const std::string& dir,
                            const std::string& length = "--save-freq 5 --max-updates 12") {
  return "train --model-dir " + dir + " --train-sets " + bible_pairs(300) + " --valid-sets " +
         bible_pairs(300) +
         " --valid-max-sentences 20 --d-model 32 --heads 2 --d-ff 64 --encoder-layers 1 "
         "--decoder-layers 1 --vocab-size 300 --batch-tokens 400 --max-length 60 --warmup-steps "
         "5 --learning-rate 1e-3 --dropout 0.1 --disp-freq 2 --valid-freq 6 --threads 1 " +
         length;
}

std::string language_model_run(const std::string& dir, const std::string& preset) {
  return "train-lm --model-dir " + dir + " --train-sets " + bible_english(400) + " --valid-sets " +
         bible_english(400) + " --tokenizer chars --preset " + preset +
         " --d-model 32 --layers 2 --context-length 32 --batch-size 4 --warmup-steps 5 "
         "--dropout 0.1 --moe-experts 4 --moe-top-k 2 --moe-every 2 --disp-freq 2 --valid-freq 6 "
         "--save-freq 5 --max-updates 12 --sample-tokens 0 --threads 1";
}

std::string vit_run(const std::string& dir) {
  return "train-vit --model-dir " + dir +
         " --train-set fashion-mnist:test --valid-split 200 --patch-size 7 --d-model 16 "
         "--heads 2 --d-ff 32 --layers 1 --batch-size 16 --warmup-steps 5 --dropout 0.1 "
         "--crop-padding 2 --horizontal-flip true --disp-freq 2 --valid-freq 6 --save-freq 5 "
         "--max-updates 12 --threads 1";
}

std::vector<nlohmann::json> logged(const std::string& dir, const std::string& event) {
  std::vector<nlohmann::json> rows;
  for (const std::string& line : lines_of(read_text(dir + "/metrics.jsonl"))) {
    nlohmann::json j = nlohmann::json::parse(line);
    if (j.value("event", "") == event) rows.push_back(j);
  }
  return rows;
}

// The largest |a - b| / |b| over each tensor (norms), and the tensor where it is.
std::pair<double, std::string> worst_relative_difference(const std::string& a,
                                                         const std::string& b) {
  NamedTensors y = load_safetensors(b);
  std::map<std::string, Tensor> x;
  for (auto& [name, t] : load_safetensors(a)) x[name] = t;
  EXPECT_EQ(x.size(), y.size());
  std::pair<double, std::string> worst{0.0, ""};
  for (const auto& [name, t] : y) {
    const Tensor& s = x.at(name);
    double diff = 0, norm = 0;
    for (int64_t i = 0; i < t.numel(); ++i) {
      double d = double(s.data<float>()[i]) - double(t.data<float>()[i]);
      diff += d * d, norm += double(t.data<float>()[i]) * double(t.data<float>()[i]);
    }
    double r = std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);
    if (r > worst.first) worst = {r, name};
  }
  return worst;
}

// Every update's loss, gradient norm and examples, and every validation, equal.
void expect_same_curves(const std::string& a, const std::string& b, const std::string& examples) {
  auto ua = logged(a, "update"), ub = logged(b, "update");
  ASSERT_EQ(ua.size(), ub.size());
  ASSERT_FALSE(ua.empty());
  for (size_t i = 0; i < ua.size(); ++i) {
    EXPECT_EQ(ua[i]["update"], ub[i]["update"]);
    EXPECT_EQ(ua[i]["loss"], ub[i]["loss"]) << "update " << ua[i]["update"];
    EXPECT_EQ(ua[i]["grad_norm"], ub[i]["grad_norm"]) << "update " << ua[i]["update"];
    EXPECT_EQ(ua[i][examples], ub[i][examples]) << "update " << ua[i]["update"];
  }
  auto va = logged(a, "valid"), vb = logged(b, "valid");
  ASSERT_EQ(va.size(), vb.size());
  for (size_t i = 0; i < va.size(); ++i) EXPECT_EQ(va[i]["valid_loss"], vb[i]["valid_loss"]);
}

void expect_two_ranks_equal_accumulate_two(const std::string& name,
                                           std::string (*run)(const std::string&),
                                           const std::string& examples) {
  std::string one = fresh_dir("dp_" + name + "_one"), two = fresh_dir("dp_" + name + "_two");
  CliResult single = run_qkv(run(one) + " --accumulate 2");
  ASSERT_EQ(single.status, 0) << single.err;
  CliResult ranks = run_shell(mpirun(2) + run(two));
  ASSERT_EQ(ranks.status, 0) << ranks.err;
  EXPECT_NE(ranks.err.find("ranks x threads: 2 x 1; batches per update: 2"), std::string::npos)
      << ranks.err;
  expect_same_curves(one, two, examples);
  auto [worst, where] =
      worst_relative_difference(one + "/model.safetensors", two + "/model.safetensors");
  EXPECT_EQ(worst, 0.0) << where;
  EXPECT_EQ(
      worst_relative_difference(one + "/model.best.safetensors", two + "/model.best.safetensors")
          .first,
      0.0);
  // Rank 0 alone wrote the log, and the updates carry the allreduce's timing.
  EXPECT_EQ(logged(two, "update").size(), logged(one, "update").size());
  EXPECT_TRUE(logged(two, "update").back().contains("allreduce_ms"));
}

TEST(DataParallel, TwoRanksTranslateAsOneProcessAccumulatingTwoBatches) {
  SKIP_WITHOUT_MPI();
  expect_two_ranks_equal_accumulate_two(
      "translation", [](const std::string& d) { return translation_run(d); }, "sentences");
}

TEST(DataParallel, TwoRanksTrainAnMoeGptAsOneProcessAccumulatingTwoBatches) {
  SKIP_WITHOUT_MPI();
  expect_two_ranks_equal_accumulate_two(
      "gpt", [](const std::string& d) { return language_model_run(d, "gpt-nano"); }, "sequences");
}

TEST(DataParallel, TwoRanksTrainAVitAsOneProcessAccumulatingTwoBatches) {
  SKIP_WITHOUT_MPI();
  expect_two_ranks_equal_accumulate_two("vit", vit_run, "images");
}

// With two batches on each rank, the ranks add (b0 + b2) + (b1 + b3) where one process adds
// b0 + b1 + b2 + b3: rounding apart, the same updates. (A Llama: the keys' biases of the other
// presets have a gradient that is zero but for rounding, which Adam scales up to full steps.)
TEST(DataParallel, AccumulatingOnEachRankMatchesOneProcessWithinRounding) {
  SKIP_WITHOUT_MPI();
  std::string one = fresh_dir("dp_acc_one"), two = fresh_dir("dp_acc_two");
  CliResult single = run_qkv(language_model_run(one, "llama-tiny") + " --accumulate 4");
  ASSERT_EQ(single.status, 0) << single.err;
  CliResult ranks = run_shell(mpirun(2) + language_model_run(two, "llama-tiny") +
                              " --accumulate 2 --allreduce-bucket-mb 0.01");
  ASSERT_EQ(ranks.status, 0) << ranks.err;
  auto ua = logged(one, "update"), ub = logged(two, "update");
  ASSERT_EQ(ua.size(), ub.size());
  for (size_t i = 0; i < ua.size(); ++i)
    EXPECT_NEAR(ua[i]["loss"].get<double>(), ub[i]["loss"].get<double>(),
                1e-6 * ua[i]["loss"].get<double>());
  auto [worst, where] =
      worst_relative_difference(one + "/model.safetensors", two + "/model.safetensors");
  EXPECT_LT(worst, 1e-6) << where;
}

// The pids of the processes whose parent is `parent`.
std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> pids;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string stat = read_text(entry.path().string() + "/stat");
    size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    std::string state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent) pids.push_back(pid_t(std::stol(name)));
  }
  return pids;
}

// Whether `pid` is a process that has not ended (an ended one may linger as a zombie where no
// init process reaps orphans, as in some containers).
bool running(pid_t pid) {
  std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  size_t close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}

// The MPI rank a process was started as (-1 when it is none).
int rank_of(pid_t pid) {
  std::string env = read_text("/proc/" + std::to_string(pid) + "/environ");
  std::string key = std::string("OMPI_COMM_WORLD_RANK=");
  size_t at = env.find(key);
  return at == std::string::npos ? -1 : std::stoi(env.substr(at + key.size()));
}

int64_t latest_checkpoint(const std::string& dir) {
  std::string latest = read_text(dir + "/checkpoint/latest");
  return latest.empty() ? -1 : std::stoll(latest.substr(latest.find('-') + 1));
}

TEST(DataParallel, AKilledRankStopsTheOtherAndTheRunResumesAsUnbroken) {
  SKIP_WITHOUT_MPI();
  std::string killed = fresh_dir("dp_killed"), unbroken = fresh_dir("dp_unbroken");
  std::string run = translation_run(killed, "--save-freq 1 --max-updates 100000");
  pid_t launcher = fork();
  if (launcher == 0) {
    freopen("/dev/null", "w", stdout);
    freopen(temp_path("dp_killed.err").c_str(), "w", stderr);
    execl("/bin/sh", "sh", "-c", ("exec " + mpirun(2) + run).c_str(), (char*)nullptr);
    _exit(127);
  }
  auto deadline = Clock::now() + std::chrono::minutes(3);
  int status = 0;
  while (latest_checkpoint(killed) < 4 && Clock::now() < deadline)
    if (waitpid(launcher, &status, WNOHANG) == launcher)
      FAIL() << "mpirun ended first: " << read_text(temp_path("dp_killed.err"));
    else
      usleep(20000);
  ASSERT_GE(latest_checkpoint(killed), 4) << read_text(temp_path("dp_killed.err"));
  pid_t victim = 0, survivor = 0;
  for (pid_t p : children_of(launcher)) (rank_of(p) == 1 ? victim : survivor) = p;
  ASSERT_GT(victim, 0) << "no rank 1 among mpirun's children";
  ASSERT_GT(survivor, 0) << "no rank 0 among mpirun's children";
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  // Rank 0 must not wait forever for the dead rank (a hang guard, not a timing: ~1 s here).
  auto hang = Clock::now() + std::chrono::minutes(5);
  bool ended = false;
  while (!(ended = waitpid(launcher, &status, WNOHANG) == launcher) && Clock::now() < hang)
    usleep(20000);
  if (!ended) kill(launcher, SIGKILL), waitpid(launcher, &status, 0);
  ASSERT_TRUE(ended) << "mpirun still ran 5 minutes after rank 1 was killed";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << "status " << status;
  EXPECT_FALSE(running(survivor)) << "rank 0 lives on";

  // The last complete checkpoint resumes, and ends where an unbroken run ends.
  const int64_t at = latest_checkpoint(killed);
  std::string more = "--save-freq 5 --max-updates " + std::to_string(at + 4);
  CliResult resumed = run_shell(mpirun(2) + translation_run(killed, more));
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("resuming from update " + std::to_string(at)), std::string::npos)
      << resumed.err;
  CliResult whole = run_shell(mpirun(2) + translation_run(unbroken, more));
  ASSERT_EQ(whole.status, 0) << whole.err;
  auto [worst, where] =
      worst_relative_difference(killed + "/model.safetensors", unbroken + "/model.safetensors");
  EXPECT_EQ(worst, 0.0) << where;
}

TEST(DataParallel, ErrorsStopEveryRankAndNameTheirRank) {
  SKIP_WITHOUT_MPI();
  std::string dir = fresh_dir("dp_errors");
  CliResult bad = run_shell(mpirun(2) + translation_run(dir) + " --accumulate 0");
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.err.find("of 2: accumulate must be positive"), std::string::npos) << bad.err;
  CliResult tokens = run_shell(mpirun(2) + translation_run(dir) + " --update-tokens 500");
  EXPECT_NE(tokens.status, 0);
  EXPECT_NE(tokens.err.find("update-tokens counts one process's tokens"), std::string::npos)
      << tokens.err;
  CliResult translate = run_shell(mpirun(2) + "translate --model-dir " + dir);
  EXPECT_NE(translate.status, 0);
  EXPECT_NE(translate.err.find("only the training commands"), std::string::npos) << translate.err;
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors"));
}

// A run saved by two ranks goes on in one process: the batches in the same order, two to an
// update with accumulate 2, so the weights end as two ranks would have left them.
TEST(DataParallel, ARunOfTwoRanksResumesInOneProcessAccumulatingTwo) {
  SKIP_WITHOUT_MPI();
  std::string split = fresh_dir("dp_resplit"), ranks = fresh_dir("dp_resplit_ranks");
  CliResult first = run_shell(mpirun(2) + translation_run(split, "--save-freq 5 --max-updates 5"));
  ASSERT_EQ(first.status, 0) << first.err;
  CliResult rest = run_qkv(translation_run(split) + " --accumulate 2");
  ASSERT_EQ(rest.status, 0) << rest.err;
  EXPECT_NE(rest.err.find("saved by 2 ranks, this run has 1"), std::string::npos) << rest.err;
  CliResult whole = run_shell(mpirun(2) + translation_run(ranks));
  ASSERT_EQ(whole.status, 0) << whole.err;
  EXPECT_EQ(
      worst_relative_difference(split + "/model.safetensors", ranks + "/model.safetensors").first,
      0.0);
}

}  // namespace
}  // namespace qkv::test
