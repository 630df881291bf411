#include "util.h"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <stdexcept>

#include "tensor/rng.h"

namespace qkv::bench {

double Timing::median() const {
  if (seconds.empty()) return 0;
  std::vector<double> s = seconds;
  std::sort(s.begin(), s.end());
  size_t n = s.size();
  return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

double Timing::min() const {
  return seconds.empty() ? 0 : *std::min_element(seconds.begin(), seconds.end());
}

Json Timing::to_json() const {
  Json j = {{"median_s", median()}, {"min_s", min()}, {"runs_s", seconds}};
  if (!sgemm_gflops.empty()) j["sgemm_gflops_after_runs"] = sgemm_gflops;
  return j;
}

Timing time_runs(const std::function<void()>& fn, const TimingPlan& plan) {
  using Clock = std::chrono::steady_clock;
  for (int i = 0; i < plan.warmup; ++i) fn();
  Timing t;
  double spent = 0;
  for (int i = 0; i < plan.runs; ++i) {
    if (i >= plan.min_runs && spent >= plan.budget_s) break;
    auto start = Clock::now();
    fn();
    double s = std::chrono::duration<double>(Clock::now() - start).count();
    t.seconds.push_back(s);
    spent += s;
    if (plan.sgemm_after) t.sgemm_gflops.push_back(square_sgemm_gflops());
  }
  return t;
}

Tensor random_ids(int64_t rows, int64_t cols, int64_t vocab, uint64_t seed, int32_t first) {
  Tensor ids = Tensor::empty({rows, cols}, DType::i32);
  Rng rng(seed);
  int32_t* p = ids.data<int32_t>();
  for (int64_t i = 0; i < rows * cols; ++i)
    p[i] = first + int32_t(rng.below(uint64_t(vocab - first)));
  return ids;
}

Tensor filled_i32(const Shape& shape, int32_t value) {
  Tensor t = Tensor::empty(shape, DType::i32);
  std::fill_n(t.data<int32_t>(), t.numel(), value);
  return t;
}

// Per layer, with B sentences of S source and T target tokens, width d, feed-forward width f:
//   encoder layer:  2 * B*S * (4 d^2 + 2 d f)                 q/k/v/out + fc1/fc2
//                 + 2 * 2 * B * S^2 * d                        scores + context
//   decoder layer:  2 * B*T * (4 d^2 + 2 d^2 + 2 d f)          self q/k/v/out, cross q/out, ffn
//                 + 2 * B*S * 2 d^2                            cross k/v of the encoder output
//                 + 2 * 2 * B * (T^2 + T*S) * d                self and cross attention
//   output:         2 * B*T * d * V                            tied projection to the vocabulary
// Training = 3 * forward: the backward pass computes dX and dW of every product (also of the
// first layer's inputs, which feed the trained embeddings). Equivalently ~6 * matmul params per
// token plus the attention terms. Causal masking is not subtracted (naive kernels compute the
// full square, as PyTorch does).
StepFlops training_flops(const nn::Seq2SeqConfig& c, const StepShape& s) {
  const double b = double(s.batch), S = double(s.src_len), T = double(s.tgt_len);
  const double d = double(c.d_model), f = double(c.d_ff), v = double(c.vocab_size);
  const double enc = double(c.encoder_layers), dec = double(c.decoder_layers);
  StepFlops r;
  r.projections = enc * 2 * b * S * (4 * d * d + 2 * d * f) +
                  dec * (2 * b * T * (6 * d * d + 2 * d * f) + 2 * b * S * 2 * d * d);
  r.attention = enc * 4 * b * S * S * d + dec * 4 * b * (T * T + T * S) * d;
  r.output = 2 * b * T * d * v;
  return r;
}

Json StepFlops::to_json() const {
  return {{"projections_fwd", projections},
          {"attention_fwd", attention},
          {"output_fwd", output},
          {"training_step", training()}};
}

double square_sgemm_gflops(int n, int reps) {
  std::vector<float> a(size_t(n) * size_t(n), 0.5f), b(a.size(), 0.25f), c(a.size());
  double best = 0;
  for (int i = 0; i < reps; ++i) {
    auto start = std::chrono::steady_clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, a.data(), n, b.data(), n,
                0.f, c.data(), n);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, 2.0 * double(n) * double(n) * double(n) / s / 1e9);
  }
  return best;
}

nn::Seq2SeqConfig bench_config(const std::string& preset, int64_t vocab) {
  nn::Seq2SeqConfig c = nn::Seq2SeqConfig::preset(preset);
  c.vocab_size = vocab;
  c.dropout = 0.1f;
  c.tie_embeddings = true;
  c.pre_norm = false;
  return c;
}

Json config_json(const nn::Seq2SeqConfig& c) {
  return {{"d_model", c.d_model},
          {"heads", c.heads},
          {"d_ff", c.d_ff},
          {"activation", c.activation},
          {"pre_norm", c.pre_norm},
          {"vocab_size", c.vocab_size},
          {"encoder_layers", c.encoder_layers},
          {"decoder_layers", c.decoder_layers},
          {"tie_embeddings", c.tie_embeddings},
          {"max_positions", c.max_positions},
          {"dropout", c.dropout},
          {"pad_id", c.pad_id},
          {"bos_id", c.bos_id},
          {"eos_id", c.eos_id}};
}

void write_json(const Json& j, const std::string& path) {
  if (path.empty()) {
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::ofstream out(path);
  if (!out) throw std::runtime_error("cannot write the benchmark results to '" + path + "'");
  out << j.dump(2) << "\n";
}

}  // namespace qkv::bench
