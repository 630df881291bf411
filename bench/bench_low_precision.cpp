// The int8 and bf16 linear kernels (ops/cpu/low_precision.h), each Isa this CPU runs, against
// the f32 linear layer on a packed weight (ops::cpu::linear_packed) and OpenBLAS's sgemm on the
// same x [m, k] and w [n, k]. The three calls alternate within each iteration, so they see the
// same machine load. The reported time is the low-precision kernel's; the counters are
//   GFLOPs, packed_GFLOPs, blas_GFLOPs   2*m*n*k / seconds (the kernel, f32 packed, sgemm)
//   vs_packed, vs_blas                    the kernel's speed / theirs
// Names: <kernel>_<isa>/m/n/k/threads. Rows 1 and 6 are decoding steps, 32 a batch of them, 960
// an encoder's or a ViT's tokens; (n, k) are a d_model 256 model's projections and vocabulary.
// Also training's bf16 product (cpu::gemm_bf16) against sgemm with the same transposes, on the
// products of a step of bench/run.sh's tiny and small presets (2048 target tokens): counters
// GFLOPs, blas_GFLOPs and vs_blas; names gemm_bf16_<isa>/m/n/k/trans_a/trans_b/threads.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <chrono>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "ops/cpu/low_precision.h"
#include "ops/kernel_registry.h"
#include "ops/kernels.h"
#include "tensor/threads.h"

namespace qkv {
namespace {
using ops::cpu::Isa;

std::vector<float> uniform(int64_t size, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> v(size);
  for (float& f : v) f = dist(gen);
  return v;
}

template <class Call>
double seconds_of(const Call& call) {
  auto start = std::chrono::steady_clock::now();
  call();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

enum class Kernel { int8, bf16 };

// Times `call` (the benchmark's time) and each reference in turn every iteration, after one
// warm-up call of each (scratch buffers, thread pools): counters GFLOPs for `call`, and
// <name>_GFLOPs and vs_<name> (the reference's time / the call's) per reference.
void time_against(benchmark::State& state, double flop_per_call, const std::function<void()>& call,
                  const std::vector<std::pair<std::string, std::function<void()>>>& references) {
  call();
  for (const auto& [name, reference] : references) reference();
  double seconds = 0;
  std::vector<double> reference_seconds(references.size());
  for (auto _ : state) {
    double t = seconds_of(call);
    state.SetIterationTime(t);
    seconds += t;
    for (size_t i = 0; i < references.size(); ++i)
      reference_seconds[i] += seconds_of(references[i].second);
  }
  double gflop = flop_per_call * double(state.iterations()) / 1e9;
  state.counters["GFLOPs"] = gflop / seconds;
  for (size_t i = 0; i < references.size(); ++i) {
    state.counters[references[i].first + "_GFLOPs"] = gflop / reference_seconds[i];
    state.counters["vs_" + references[i].first] = reference_seconds[i] / seconds;
  }
}

void bench(benchmark::State& state, Kernel kernel, Isa isa) {
  int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  set_num_threads(int(state.range(3)));
  std::vector<float> x = uniform(m * k, 1), w = uniform(n * k, 2), bias = uniform(n, 3);
  std::vector<float> y(m * n), y_packed(m * n), y_blas(m * n);

  // f32 reference: the weight packed once, as a decoding step uses it.
  auto* pack_f32 = ops::find_kernel<ops::kernels::pack_linear_weight, float>(Device::cpu);
  auto* linear_f32 = ops::find_kernel<ops::kernels::linear_packed, float>(Device::cpu);
  std::vector<float> packed_f32((n + ops::kLinearPanel - 1) / ops::kLinearPanel *
                                ops::kLinearPanel * k);
  pack_f32(w.data(), n, k, packed_f32.data());

  std::vector<int8_t> q(n * k), packed_i8;
  std::vector<float> scale(n);
  std::vector<uint16_t> packed_bf16;
  if (kernel == Kernel::int8) {
    ops::cpu::quantize_rows_int8(w.data(), n, k, q.data(), scale.data());
    packed_i8.resize(ops::cpu::int8_packed_bytes(n, k, isa));
    ops::cpu::pack_int8(q.data(), n, k, isa, packed_i8.data());
  } else {
    packed_bf16.resize(ops::cpu::bf16_packed_elements(n, k, isa));
    ops::cpu::pack_bf16(w.data(), n, k, isa, packed_bf16.data());
  }

  auto call = [&] {
    if (kernel == Kernel::int8)
      ops::cpu::linear_int8(x.data(), m, k, packed_i8.data(), scale.data(), bias.data(), n, isa,
                            y.data());
    else
      ops::cpu::linear_bf16(x.data(), m, k, packed_bf16.data(), bias.data(), n, isa, y.data());
  };
  auto call_packed = [&] {
    linear_f32(x.data(), packed_f32.data(), bias.data(), m, n, k, false, y_packed.data());
  };
  auto call_blas = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(m), int(n), int(k), 1.f, x.data(),
                int(k), w.data(), int(k), 0.f, y_blas.data(), int(n));
  };
  time_against(state, 2.0 * double(m) * double(n) * double(k), call,
               {{"packed", call_packed}, {"blas", call_blas}});
}

void bench_gemm(benchmark::State& state, Isa isa) {
  int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  bool trans_a = state.range(3), trans_b = state.range(4);
  set_num_threads(int(state.range(5)));
  std::vector<float> a = uniform(m * k, 1), b = uniform(k * n, 2), c(m * n), c_blas(m * n);
  int64_t lda = trans_a ? m : k, ldb = trans_b ? k : n;
  auto call = [&] {
    ops::cpu::gemm_bf16(trans_a, trans_b, m, n, k, 1.f, a.data(), lda, b.data(), ldb, 0.f, c.data(),
                        n, isa);
  };
  auto call_blas = [&] {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, int(m), int(n), int(k), 1.f, a.data(),
                int(lda), b.data(), int(ldb), 0.f, c_blas.data(), int(n));
  };
  time_against(state, 2.0 * double(m) * double(n) * double(k), call, {{"blas", call_blas}});
}

void register_gemm_benchmarks() {
  Isa isa = ops::cpu::cpu_isa();
  std::string name = std::string("gemm_bf16_") + ops::cpu::isa_name(isa);
  auto* b = benchmark::RegisterBenchmark(name.c_str(), bench_gemm, isa);
  b->ArgNames({"m", "n", "k", "trans_a", "trans_b", "threads"})
      ->UseManualTime()
      ->MinTime(0.2)
      ->Unit(benchmark::kMicrosecond);
  // Per preset (d, ff): forward x w^T for the attention projections, ff1, ff2 and the output
  // layer, dx = dy w of ff2, and dw = dy^T x of ff1.
  for (auto [d, ff] : {std::pair<int64_t, int64_t>{256, 1024}, {512, 2048}})
    for (int64_t threads : {1, 2}) {
      b->Args({2048, 3 * d, d, 0, 1, threads});
      b->Args({2048, ff, d, 0, 1, threads});
      b->Args({2048, d, ff, 0, 1, threads});
      b->Args({2048, 8000, d, 0, 1, threads});
      b->Args({2048, ff, d, 0, 0, threads});
      b->Args({ff, d, 2048, 1, 0, threads});
    }
}

void register_benchmarks() {
  register_gemm_benchmarks();
  for (Kernel kernel : {Kernel::int8, Kernel::bf16})
    for (Isa isa : ops::cpu::isas_up_to(ops::cpu::cpu_isa())) {
      if (kernel == Kernel::bf16 && isa == Isa::avx512vnni) continue;  // runs avx2's bf16
      std::string name =
          std::string(kernel == Kernel::int8 ? "int8_" : "bf16_") + ops::cpu::isa_name(isa);
      auto* b = benchmark::RegisterBenchmark(name.c_str(), bench, kernel, isa);
      b->ArgNames({"m", "n", "k", "threads"})
          ->UseManualTime()
          ->MinTime(0.2)
          ->Unit(benchmark::kMicrosecond);
      for (int64_t threads : {1, 2})
        for (int64_t m : {1, 6, 32, 960})
          for (auto [n, k] :
               {std::pair<int64_t, int64_t>{256, 256}, {1024, 256}, {256, 1024}, {8000, 256}})
            b->Args({m, n, k, threads});
    }
}

}  // namespace
}  // namespace qkv

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  qkv::register_benchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
