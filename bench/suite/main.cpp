// qkv_bench: the C++ benchmarks of the suite. bench/run.sh runs every subcommand and
// bench/torch_bench.py with the same shapes and thread count, then bench/report.py prints
// the ratios.
//   qkv_bench gemm|train|translate|test-split|attention [options] [--threads N] [--json FILE]
#include <CLI/CLI.hpp>
#include <cstdarg>
#include <cstdio>
#include <iostream>

#include "benchmarks.h"
#include "ops/precision.h"
#include "tensor/threads.h"

namespace qkv::bench {

void log_line(const char* format, ...) {
  va_list args;
  va_start(args, format);
  std::vfprintf(stderr, format, args);
  va_end(args);
  std::fputc('\n', stderr);
}

Device bench_device(const std::string& device, const std::string& precision) {
  ops::precision_from_name(precision);  // f32 or bf16, else an error naming the value
  return usable_device(device);
}

void wait_for(Device device) {
  if (device == Device::cuda) filled_i32({1}, 0).to(device).to(Device::cpu);  // waits
}

}  // namespace qkv::bench

int main(int argc, char** argv) {
  using namespace qkv::bench;
  CLI::App app{"qkv benchmarks (run them all with bench/run.sh)"};
  app.require_subcommand(1);
  app.fallthrough();  // --threads and --json also after the subcommand
  int threads = 2;
  std::string json_path;
  app.add_option("--threads", threads, "threads for OpenMP and the BLAS")->capture_default_str();
  app.add_option("--json", json_path, "write the results here (default: stdout)");

  GemmArgs gemm;
  auto* gemm_cmd = app.add_subcommand("gemm", "OpenBLAS sgemm GFLOP/s");
  gemm_cmd->add_option("--seconds", gemm.seconds_per_shape, "timing budget per shape")
      ->capture_default_str();

  TrainArgs train;
  auto* train_cmd = app.add_subcommand("train", "training steps: target tokens/s");
  train_cmd->add_option("--preset", train.preset, "tiny, small or base")->capture_default_str();
  train_cmd->add_option("--vocab", train.vocab)->capture_default_str();
  train_cmd->add_option("--batch", train.shape.batch)->capture_default_str();
  train_cmd->add_option("--src-len", train.shape.src_len)->capture_default_str();
  train_cmd->add_option("--tgt-len", train.shape.tgt_len)->capture_default_str();
  train_cmd->add_option("--warmup", train.warmup)->capture_default_str();
  train_cmd->add_option("--steps", train.steps, "most timed steps")->capture_default_str();
  train_cmd->add_option("--budget", train.budget_s, "seconds of timed steps")
      ->capture_default_str();
  train_cmd->add_option("--attention", train.attention, "naive, tiled or automatic")
      ->check(CLI::IsMember({"naive", "tiled", "automatic"}))
      ->capture_default_str();
  train_cmd->add_option("--device", train.device, "cpu or cuda")->capture_default_str();
  train_cmd->add_option("--precision", train.precision, "f32, or bf16 products")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();

  TranslateArgs translate;
  auto* translate_cmd = app.add_subcommand("translate", "greedy and beam search: target tokens/s");
  translate_cmd->add_option("--preset", translate.preset)->capture_default_str();
  translate_cmd->add_option("--vocab", translate.vocab)->capture_default_str();
  translate_cmd->add_option("--src-len", translate.src_len)->capture_default_str();
  translate_cmd->add_option("--tgt-len", translate.tgt_len, "exact output length")
      ->capture_default_str();
  translate_cmd->add_option("--batches", translate.batches)->capture_default_str();
  translate_cmd->add_option("--beams", translate.beams)->capture_default_str();
  translate_cmd->add_option("--runs", translate.runs)->capture_default_str();
  translate_cmd->add_option("--budget", translate.budget_s, "seconds per case")
      ->capture_default_str();
  translate_cmd->add_option("--model-dir", translate.model_dir,
                            "write weights, config and sources here for torch_bench.py");
  translate_cmd->add_option("--device", translate.device, "cpu or cuda")->capture_default_str();
  translate_cmd->add_option("--precision", translate.precision, "f32, or bf16 products")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  translate_cmd
      ->add_option("--compute-types", translate.compute_types,
                   "inference compute types (cpu): f32, bf16, int8; each case runs in each")
      ->check(CLI::IsMember({"f32", "bf16", "int8"}))
      ->capture_default_str();

  TestSplitArgs split;
  auto* split_cmd = app.add_subcommand(
      "test-split", "qkv translate's decoding of a test split: source tokens/s, greedy and beam");
  split_cmd->add_option("--model-dir", split.model_dir, "a directory written by qkv train")
      ->required();
  split_cmd->add_option("--checkpoint", split.checkpoint, "best or last")->capture_default_str();
  split_cmd->add_option("--test", split.test, "test pairs: file.tsv[.xz] or src-file,tgt-file")
      ->capture_default_str();
  split_cmd->add_option("--sentences", split.sentences, "the first N sources (0: all)")
      ->capture_default_str();
  split_cmd->add_option("--beams", split.beams)->capture_default_str();
  split_cmd->add_option("--batch-tokens", split.batch_tokens, "source subwords per batch")
      ->capture_default_str();
  split_cmd->add_option("--runs", split.runs)->capture_default_str();
  split_cmd->add_option("--budget", split.budget_s, "seconds per beam size")->capture_default_str();
  split_cmd->add_option("--out-dir", split.out_dir,
                        "write source ids, config and outputs here for torch_bench.py");

  AttentionArgs attention;
  auto* attention_cmd =
      app.add_subcommand("attention", "tiled vs naive attention: time and memory");
  attention_cmd->add_option("--lengths", attention.lengths)->capture_default_str();
  attention_cmd->add_option("--batch", attention.batch)->capture_default_str();
  attention_cmd->add_option("--heads", attention.heads)->capture_default_str();
  attention_cmd->add_option("--head-dim", attention.head_dim)->capture_default_str();
  attention_cmd->add_flag("--causal", attention.causal);
  attention_cmd->add_option("--runs", attention.runs)->capture_default_str();
  attention_cmd->add_option("--budget", attention.budget_s, "seconds per case")
      ->capture_default_str();

  CLI11_PARSE(app, argc, argv);
  try {
    qkv::set_num_threads(threads);
    Json result;
    if (*gemm_cmd) result = bench_gemm(gemm);
    if (*train_cmd) result = bench_train(train);
    if (*translate_cmd) result = bench_translate(translate);
    if (*split_cmd) result = bench_test_split(split);
    if (*attention_cmd) result = bench_attention(attention);
    result["threads"] = threads;
    write_json(result, json_path);
  } catch (const std::exception& e) {
    std::cerr << "qkv_bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
