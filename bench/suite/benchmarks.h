// The benchmarks of qkv_bench and their settings (filled from the command line in main.cpp).
// Each returns its results as JSON; bench/report.py joins them with PyTorch's.
#pragma once
#include <string>
#include <vector>

#include "util.h"

namespace qkv::bench {

// printf-style progress line on stderr (stdout may carry JSON).
void log_line(const char* format, ...);

// The device named by --device (usable_device: an error where cuda is missing) after checking
// that --precision is f32 or bf16.
Device bench_device(const std::string& device, const std::string& precision);
// Waits until the device has done all queued work (a no-op on the cpu).
void wait_for(Device device);

struct GemmArgs {
  double seconds_per_shape = 0.5;
};
Json bench_gemm(const GemmArgs& args);

struct TrainArgs {
  std::string preset = "tiny";
  int64_t vocab = 8000;
  StepShape shape;
  int warmup = 1, steps = 5;
  double budget_s = 15;  // no more timed steps after this many seconds (but at least 3)
  std::string attention = "automatic";  // naive, tiled or automatic
  std::string device = "cpu";           // cpu or cuda
  std::string precision = "f32";        // f32, or bf16 matrix products
  uint64_t seed = 1;
};
Json bench_train(const TrainArgs& args);

struct TranslateArgs {
  std::string preset = "tiny";
  int64_t vocab = 8000;
  int64_t src_len = 30, tgt_len = 32;
  std::vector<int64_t> batches = {32, 1};
  std::vector<int> beams = {1, 5};
  int runs = 5;
  double budget_s = 5;         // per (batch, beam) case: no more runs after this (but at least 1)
  std::string model_dir;       // where the weights, config and source ids go for torch_bench.py
  std::string device = "cpu";  // cpu or cuda
  std::string precision = "f32";  // f32, or bf16 matrix products
  // Inference compute types to measure (cpu; ops/compute_type.h), each case once per type.
  std::vector<std::string> compute_types = {"f32"};
  uint64_t seed = 1;
};
Json bench_translate(const TranslateArgs& args);

// Translation of the first `sentences` source sentences of a test split with decode::Translator
// (what qkv translate runs) and a trained model directory.
struct TestSplitArgs {
  std::string model_dir;  // written by qkv train
  std::string checkpoint = "best";
  std::string test = "data/bible.es-en.test.tsv.xz";
  int64_t sentences = 200;  // 0: all
  std::vector<int> beams = {1, 5};
  int64_t batch_tokens = 4096;  // source subwords per batch, as qkv translate's default
  int runs = 3;
  double budget_s = 20;  // per beam: no more runs after this (but at least 1)
  std::string out_dir;   // where the source ids, config and qkv's outputs go for torch_bench.py
};
Json bench_test_split(const TestSplitArgs& args);

struct AttentionArgs {
  std::vector<int64_t> lengths = {512, 2048, 8192};
  int64_t batch = 1, heads = 4, head_dim = 64;
  bool causal = false;
  int runs = 3;
  double budget_s = 3;  // per (length, kernel) case: no more runs after this (but at least 1)
};
Json bench_attention(const AttentionArgs& args);

}  // namespace qkv::bench
