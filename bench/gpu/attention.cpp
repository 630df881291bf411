// qkv's FlashAttention on the GPU at the FlashAttention-2 paper's setup: 16k tokens per batch
// (batch = 16384 / seq), hidden 2048 (heads = 2048 / D), bf16, seq 512..8192, head dim 64 and
// 128, causal and not. Forward and forward+backward (gradients in bf16, as PyTorch's) timed with
// CUDA events around each call: warm-up runs first, then the median of the timed runs, which
// rotate among several input sets so that no set stays in L2. TFLOP/s counts 4 B H L^2 D for
// the forward (half of it when causal) and 3.5 times that for forward+backward.
// bench/gpu/attention_torch.py times PyTorch on the same shapes; bench/gpu/run_attention.sh
// runs both and prints the table.
//   qkv_attention_bench [--json PATH] [--repeats N] [--seqs 512,1024,...] [--dims 64,128]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "ops/ops.h"
#include "tensor/rng.h"

namespace {

using qkv::Device;
using qkv::DType;
using qkv::Tensor;

constexpr int64_t kTokens = 16384, kHidden = 2048;
constexpr int kInputSets = 3, kWarmup = 3;

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string(what) + " failed: " + cudaGetErrorString(status));
}

std::vector<int64_t> parse_list(const std::string& text) {
  std::vector<int64_t> values;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) values.push_back(std::stoll(item));
  return values;
}

// Milliseconds of each of `repeats` runs of fn(set), rotating over the input sets; the median.
double median_ms(const std::function<void(int)>& fn, int repeats) {
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "cudaEventCreate");
  check(cudaEventCreate(&stop), "cudaEventCreate");
  for (int i = 0; i < kWarmup; ++i) fn(i % kInputSets);
  check(cudaDeviceSynchronize(), "warm-up");
  std::vector<float> ms(repeats);
  for (int i = 0; i < repeats; ++i) {
    check(cudaEventRecord(start), "cudaEventRecord");
    fn(i % kInputSets);
    check(cudaEventRecord(stop), "cudaEventRecord");
    check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    check(cudaEventElapsedTime(&ms[i], start, stop), "cudaEventElapsedTime");
  }
  check(cudaEventDestroy(start), "cudaEventDestroy");
  check(cudaEventDestroy(stop), "cudaEventDestroy");
  std::sort(ms.begin(), ms.end());
  return ms[repeats / 2];
}

// One input set: q, k, v, dout, each [16384 * 2048] bf16 on the device, viewed per shape.
struct InputSet {
  Tensor q, k, v, dout;
};
Tensor random_bf16(qkv::Rng& rng) {
  Tensor x = Tensor::empty({kTokens * kHidden});
  rng.normal(x);
  return x.cast(DType::bf16).to(Device::cuda);
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_path = "attention_qkv.json";
  int repeats = 20;
  std::vector<int64_t> seqs{512, 1024, 2048, 4096, 8192}, dims{64, 128};
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--json")
      json_path = value;
    else if (flag == "--repeats")
      repeats = std::stoi(value);
    else if (flag == "--seqs")
      seqs = parse_list(value);
    else if (flag == "--dims")
      dims = parse_list(value);
    else {
      std::fprintf(stderr, "unknown option %s\n", flag.c_str());
      return 2;
    }
  }
  if (qkv::cuda_device_count() == 0) {
    std::printf("qkv_attention_bench: no CUDA device, nothing to time (skipped)\n");
    return 0;
  }
  cudaDeviceProp prop;
  check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  std::printf("qkv FlashAttention on %s, bf16, %lld tokens per batch, hidden %lld\n", prop.name,
              (long long)kTokens, (long long)kHidden);

  qkv::Rng rng(2026);
  std::vector<InputSet> sets;
  for (int i = 0; i < kInputSets; ++i)
    sets.push_back({random_bf16(rng), random_bf16(rng), random_bf16(rng), random_bf16(rng)});

  nlohmann::json results = nlohmann::json::array();
  for (int64_t d : dims) {
    for (int64_t seq : seqs) {
      for (bool causal : {false, true}) {
        const int64_t batch = kTokens / seq, heads = kHidden / d;
        const qkv::Shape shape{batch, heads, seq, d};  // [B, H, L, D]
        const float scale = 1.f / std::sqrt(float(d));
        const qkv::ops::AttentionMask mask{causal, Tensor()};
        auto view = [&](const Tensor& x) { return x.reshape(shape); };
        Tensor dq = Tensor::zeros(shape, DType::bf16, Device::cuda);
        Tensor dk = Tensor::zeros(shape, DType::bf16, Device::cuda);
        Tensor dv = Tensor::zeros(shape, DType::bf16, Device::cuda);
        auto forward = [&](int s, qkv::ops::AttentionSaved* saved) {
          return qkv::ops::attention_forward(view(sets[s].q), view(sets[s].k), view(sets[s].v),
                                             mask, scale, saved);
        };
        const double fwd_ms = median_ms([&](int s) { forward(s, nullptr); }, repeats);
        const double fwd_bwd_ms = median_ms(
            [&](int s) {
              qkv::ops::AttentionSaved saved;
              Tensor out = forward(s, &saved);
              qkv::ops::attention_backward(view(sets[s].dout), view(sets[s].q), view(sets[s].k),
                                           view(sets[s].v), out, mask, scale, saved, dq, dk, dv);
            },
            repeats);
        check(cudaGetLastError(), "attention");
        const double fwd_flops = 4.0 * batch * heads * seq * seq * d * (causal ? 0.5 : 1.0);
        const double fwd_tflops = fwd_flops / (fwd_ms * 1e-3) / 1e12;
        const double fwd_bwd_tflops = 3.5 * fwd_flops / (fwd_bwd_ms * 1e-3) / 1e12;
        std::printf(
            "seq %5lld  D %3lld  %-6s  fwd %8.3f ms %6.1f TFLOP/s   fwd+bwd %8.3f ms %6.1f "
            "TFLOP/s\n",
            (long long)seq, (long long)d, causal ? "causal" : "full", fwd_ms, fwd_tflops,
            fwd_bwd_ms, fwd_bwd_tflops);
        std::fflush(stdout);
        results.push_back({{"seq", seq},
                           {"head_dim", d},
                           {"causal", causal},
                           {"batch", batch},
                           {"heads", heads},
                           {"fwd_ms", fwd_ms},
                           {"fwd_tflops", fwd_tflops},
                           {"fwd_bwd_ms", fwd_bwd_ms},
                           {"fwd_bwd_tflops", fwd_bwd_tflops}});
      }
    }
  }
  std::ofstream(json_path) << nlohmann::json{{"device", prop.name},
                                             {"repeats", repeats},
                                             {"input_sets", kInputSets},
                                             {"results", results}}
                                  .dump(1)
                           << "\n";
  std::printf("wrote %s\n", json_path.c_str());
  return 0;
}
