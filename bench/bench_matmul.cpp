// qkv's ops::matmul and ops::linear_forward at Transformer shapes, each measured beside a raw
// cblas_sgemm of the same shape in the same iteration (calls alternate, so both see the same
// machine load). The reported time is qkv's; the counters are
//   qkv_GFLOPs, blas_GFLOPs   2*m*n*k / seconds
//   ratio                     qkv speed / BLAS speed (1.0 = qkv adds nothing over the BLAS;
//                             linear also writes the bias, which the raw sgemm does not)
// Threads: --threads=N (or --threads N), else $QKV_THREADS, else the OpenMP default.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>

#include "ops/ops.h"
#include "tensor/threads.h"

namespace qkv {
namespace {

struct GemmShape {
  int64_t m, k, n;
  bool trans_b;  // b is [n, k] (a weight, as stored) rather than [k, n]
};

Tensor random_tensor(const Shape& shape, uint64_t seed) {
  Tensor t = Tensor::empty(shape);
  Rng(seed).uniform(t, -1.f, 1.f);
  return t;
}

double seconds_of(const std::function<void()>& call) {
  auto start = std::chrono::steady_clock::now();
  call();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Times qkv_call (reported) and blas_call (the reference) alternately.
void run_against_blas(benchmark::State& state, const GemmShape& s,
                      const std::function<void()>& qkv_call,
                      const std::function<void()>& blas_call) {
  qkv_call();  // warm-up: allocator cache, BLAS thread pool
  blas_call();
  double qkv_seconds = 0, blas_seconds = 0;
  for (auto _ : state) {
    double t = seconds_of(qkv_call);
    state.SetIterationTime(t);
    qkv_seconds += t;
    blas_seconds += seconds_of(blas_call);
  }
  double gflop = 2.0 * double(s.m) * double(s.n) * double(s.k) * double(state.iterations()) / 1e9;
  state.counters["qkv_GFLOPs"] = gflop / qkv_seconds;
  state.counters["blas_GFLOPs"] = gflop / blas_seconds;
  state.counters["ratio"] = blas_seconds / qkv_seconds;
}

// c [m, n] = a [m, k] @ b, b being [n, k]^T or [k, n], straight through OpenBLAS.
void blas_sgemm(const GemmShape& s, const Tensor& a, const Tensor& b, Tensor& c) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, s.trans_b ? CblasTrans : CblasNoTrans, int(s.m),
              int(s.n), int(s.k), 1.f, a.data<float>(), int(s.k), b.data<float>(),
              int(s.trans_b ? s.k : s.n), 0.f, c.data<float>(), int(s.n));
}

void bench_matmul(benchmark::State& state, GemmShape s) {
  Tensor a = random_tensor({s.m, s.k}, 1);                                     // [m, k]
  Tensor b = random_tensor(s.trans_b ? Shape{s.n, s.k} : Shape{s.k, s.n}, 2);  // [n, k] or [k, n]
  Tensor c = Tensor::empty({s.m, s.n});                                        // [m, n]
  run_against_blas(
      state, s, [&] { benchmark::DoNotOptimize(ops::matmul(a, false, b, s.trans_b)); },
      [&] { blas_sgemm(s, a, b, c); });
}

void bench_linear(benchmark::State& state, GemmShape s) {
  Tensor x = random_tensor({s.m, s.k}, 1);  // [tokens, in]
  Tensor w = random_tensor({s.n, s.k}, 2);  // [out, in]
  Tensor bias = random_tensor({s.n}, 3);    // [out]
  Tensor c = Tensor::empty({s.m, s.n});     // [tokens, out]
  run_against_blas(
      state, s, [&] { benchmark::DoNotOptimize(ops::linear_forward(x, w, bias)); },
      [&] { blas_sgemm(s, x, w, c); });
}

std::string shape_name(const GemmShape& s) {
  std::string b = s.trans_b ? std::to_string(s.n) + "x" + std::to_string(s.k) + "^T"
                            : std::to_string(s.k) + "x" + std::to_string(s.n);
  return std::to_string(s.m) + "x" + std::to_string(s.k) + "*" + b;
}

void register_benchmarks() {
  // Transformer projections: tokens x d_model against [d_ff, d_model] and back, and the
  // vocabulary projection; the vit-fashion ViT's (256 images of 17 patches, d_model 64, MLP
  // 128); then square products without a transpose.
  const GemmShape transformer[] = {{2048, 256, 1024, true}, {2048, 1024, 256, true},
                                   {2048, 256, 8000, true}, {4352, 64, 64, true},
                                   {4352, 64, 128, true},   {4352, 128, 64, true}};
  const GemmShape square[] = {
      {512, 512, 512, false}, {1024, 1024, 1024, false}, {2048, 2048, 2048, false}};
  auto configure = [](benchmark::internal::Benchmark* b) {
    b->UseManualTime()->MinTime(0.5)->Unit(benchmark::kMillisecond);
  };
  for (const auto& s : transformer)
    configure(benchmark::RegisterBenchmark(("matmul/" + shape_name(s)).c_str(), bench_matmul, s));
  for (const auto& s : square)
    configure(benchmark::RegisterBenchmark(("matmul/" + shape_name(s)).c_str(), bench_matmul, s));
  for (const auto& s : transformer)
    configure(benchmark::RegisterBenchmark(("linear/" + shape_name(s)).c_str(), bench_linear, s));
  // A decoding step's projections: one row per sentence (1, 32) or beam (160).
  for (int64_t rows : {1, 32, 160})
    for (auto [in, out] :
         {std::pair<int64_t, int64_t>{256, 256}, {256, 1024}, {1024, 256}, {256, 8000}}) {
      GemmShape s{rows, in, out, true};
      configure(benchmark::RegisterBenchmark(("linear/" + shape_name(s)).c_str(), bench_linear, s));
    }
}

// Takes --threads=N or --threads N out of argv (Google Benchmark rejects flags it does not
// know); returns 0 when absent.
int take_threads_flag(int& argc, char** argv) {
  int threads = 0, out = 1;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--threads=", 0) == 0)
      threads = std::atoi(arg.c_str() + 10);
    else if (arg == "--threads" && i + 1 < argc)
      threads = std::atoi(argv[++i]);
    else
      argv[out++] = argv[i];
  }
  argc = out;
  return threads;
}

}  // namespace
}  // namespace qkv

int main(int argc, char** argv) {
  int threads = qkv::take_threads_flag(argc, argv);
  if (threads <= 0 && std::getenv("QKV_THREADS")) threads = std::atoi(std::getenv("QKV_THREADS"));
  qkv::set_num_threads(threads);
  benchmark::AddCustomContext("qkv_threads", std::to_string(qkv::num_threads()));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  qkv::register_benchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
