// Shared pieces of qkv_bench: timing (warm-up runs excluded, median of the timed runs), random
// token batches, the FLOP count of a Seq2Seq training step, and the JSON each benchmark writes.
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nn/seq2seq.h"

namespace qkv::bench {

using Json = nlohmann::json;

// Seconds of each timed run of `fn`, after `warmup` untimed runs. Stops after `runs` timed runs,
// or earlier once `budget_s` seconds were spent on timed runs (but never before `min_runs`).
// With sgemm_after, a square sgemm is timed right after each run (outside its time): the GEMM
// rate under the same machine load, to compare the run's FLOP rate with.
struct Timing {
  std::vector<double> seconds;
  std::vector<double> sgemm_gflops;  // one per run, with sgemm_after
  double median() const;
  double min() const;
  Json to_json() const;  // {"median_s", "min_s", "runs_s": [...], "sgemm_gflops_after_runs": [...]}
};
struct TimingPlan {
  int warmup = 1;
  int runs = 5;
  int min_runs = 2;
  double budget_s = 1e9;
  bool sgemm_after = false;
};
Timing time_runs(const std::function<void()>& fn, const TimingPlan& plan);

// i32 [rows, cols] of ids drawn uniformly from [first, vocab) (no pad/unk/bos/eos).
Tensor random_ids(int64_t rows, int64_t cols, int64_t vocab, uint64_t seed, int32_t first = 4);
Tensor filled_i32(const Shape& shape, int32_t value);

// The benchmark setup of issue 6: `batch` sentences, `src_len` source and `tgt_len` target tokens.
struct StepShape {
  int64_t batch = 64, src_len = 30, tgt_len = 32;
  int64_t target_tokens() const { return batch * tgt_len; }
};

// Matmul FLOPs (2 per multiply-add) of one training step (forward + backward) of `c` on `s`;
// see the formula in bench_util.cpp. Elementwise work is not counted.
struct StepFlops {
  double projections = 0;  // attention q/k/v/out and feed-forward Linear layers, forward
  double attention = 0;    // scores (q k^T) and context (p v), forward, full (unmasked) squares
  double output = 0;       // tied output projection to the vocabulary, forward
  double forward() const { return projections + attention + output; }
  double training() const { return 3 * forward(); }  // backward = 2x forward (dX and dW)
  Json to_json() const;
};
StepFlops training_flops(const nn::Seq2SeqConfig& c, const StepShape& s);

// The best rate of `reps` OpenBLAS sgemm calls of n x n x n, in GFLOP/s (about 0.1 s). Uses its
// own buffers, not qkv's allocator.
double square_sgemm_gflops(int n = 1024, int reps = 3);

nn::Seq2SeqConfig bench_config(const std::string& preset, int64_t vocab);
// The fields of `c` that torch_bench.py builds its model from (tests/python's config.json).
Json config_json(const nn::Seq2SeqConfig& c);

// Writes `j` (pretty) to `path`, or to stdout when path is empty.
void write_json(const Json& j, const std::string& path);

}  // namespace qkv::bench
