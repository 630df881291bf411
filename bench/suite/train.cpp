// Training speed: the step `qkv train` runs (train::batch_loss on a tape with dropout, backward,
// optim::clipped_update), on a fixed batch of random ids, on the cpu or on cuda (f32, or bf16
// products in an AutocastScope around forward and backward, as the trainer opens it).
#include <chrono>

#include "benchmarks.h"
#include "ops/precision.h"
#include "optim/optimizer.h"
#include "tensor/allocator.h"
#include "train/trainer.h"

namespace qkv::bench {

namespace {
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

ops::AttentionImpl attention_impl(const std::string& name) {
  if (name == "naive") return ops::AttentionImpl::naive;
  if (name == "tiled") return ops::AttentionImpl::tiled;
  return ops::AttentionImpl::automatic;
}

// Seconds spent in each phase of the timed steps.
struct Phases {
  std::vector<double> forward, backward, update;
};
}  // namespace

Json bench_train(const TrainArgs& args) {
  const nn::Seq2SeqConfig c = bench_config(args.preset, args.vocab);
  const StepShape& s = args.shape;
  const Device device = bench_device(args.device, args.precision);
  const ops::MatmulPrecision precision = ops::precision_from_name(args.precision);
  nn::Seq2Seq model(c);
  Rng init_rng(args.seed);
  model.init(init_rng);
  model.to(device);
  nn::ParamList params = model.params();
  optim::Adam adam(params, {0.9f, 0.98f, 1e-9f, 0.f});

  // Full-length sentences: src [B, S]; tgt_in = <bos> y1..y(T-1), tgt_out = y1..y(T-1) <eos>.
  data::Batch batch;
  batch.src = random_ids(s.batch, s.src_len, c.vocab_size, args.seed + 1);
  batch.src_lengths = filled_i32({s.batch}, int32_t(s.src_len));
  Tensor words = random_ids(s.batch, s.tgt_len - 1, c.vocab_size, args.seed + 2);
  batch.tgt_in = Tensor::empty({s.batch, s.tgt_len}, DType::i32);
  batch.tgt_out = Tensor::empty({s.batch, s.tgt_len}, DType::i32);
  for (int64_t b = 0; b < s.batch; ++b) {
    const int32_t* w = words.data<int32_t>() + b * (s.tgt_len - 1);
    int32_t* in = batch.tgt_in.data<int32_t>() + b * s.tgt_len;
    int32_t* out = batch.tgt_out.data<int32_t>() + b * s.tgt_len;
    in[0] = c.bos_id, out[s.tgt_len - 1] = c.eos_id;
    for (int64_t t = 0; t + 1 < s.tgt_len; ++t) in[t + 1] = out[t] = w[t];
  }
  batch = batch.to(device);

  Rng dropout_rng(args.seed + 3);
  nn::Context ctx{true, c.dropout, &dropout_rng, attention_impl(args.attention)};
  const float lr = 1e-4f, clip_norm = 1.f, smoothing = 0.1f;
  std::vector<float> losses;
  Phases phases;
  auto step = [&] {
    auto t0 = Clock::now();
    Tape tape;
    Var loss;
    float loss_sum = 0;
    decltype(t0) t1, t2;
    {
      ops::AutocastScope autocast(precision);
      {
        Recording rec(tape);
        loss = train::batch_loss(model, batch, smoothing, ctx);
      }
      loss_sum = loss.value().item();  // waits for the forward pass
      t1 = Clock::now();
      tape.backward(loss);
      wait_for(device);
      t2 = Clock::now();
    }
    losses.push_back(loss_sum / float(s.target_tokens()));
    optim::clipped_update(adam, params, loss_sum, s.target_tokens(), lr, clip_norm);
    wait_for(device);
    phases.forward.push_back(std::chrono::duration<double>(t1 - t0).count());
    phases.backward.push_back(std::chrono::duration<double>(t2 - t1).count());
    phases.update.push_back(since(t2));
  };

  auto& alloc = allocator_for(device);
  for (int i = 0; i < args.warmup; ++i) step();
  phases = {};
  alloc.reset_peak();
  size_t system_before = alloc.stats().system_allocations;
  // The OpenBLAS sgemm rate after each step is a cpu yardstick only.
  bool on_cpu = device == Device::cpu;
  Timing t = time_runs(step, {0, args.steps, 3, args.budget_s, on_cpu});
  AllocatorStats stats = alloc.stats();
  StepFlops flops = training_flops(c, s);
  std::vector<double> shares;  // model FLOP rate / sgemm rate right after the step
  for (size_t i = 0; i < t.sgemm_gflops.size(); ++i)
    shares.push_back(flops.training() / t.seconds[i] / 1e9 / t.sgemm_gflops[i]);

  auto median_of = [](const std::vector<double>& v) { return Timing{v, {}}.median(); };
  double tokens_per_s = double(s.target_tokens()) / t.median();
  log_line(
      "train %-5s qkv %s %s %8.0f target tokens/s  (%.4f s/step: forward %.4f, backward %.4f, "
      "update %.4f)",
      args.preset.c_str(), args.device.c_str(), args.precision.c_str(), tokens_per_s, t.median(),
      median_of(phases.forward), median_of(phases.backward), median_of(phases.update));
  return {{"preset", args.preset},
          {"vocab", c.vocab_size},
          {"d_model", c.d_model},
          {"heads", c.heads},
          {"d_ff", c.d_ff},
          {"layers", {c.encoder_layers, c.decoder_layers}},
          {"batch", s.batch},
          {"src_len", s.src_len},
          {"tgt_len", s.tgt_len},
          {"target_tokens_per_step", s.target_tokens()},
          {"params", nn::count_params(params)},
          {"attention", args.attention},
          {"device", args.device},
          {"precision", args.precision},
          {"timing", t.to_json()},
          {"target_tokens_per_s", tokens_per_s},
          {"phases_median_s",
           {{"forward", median_of(phases.forward)},
            {"backward", median_of(phases.backward)},
            {"update", median_of(phases.update)}}},
          {"flops", flops.to_json()},
          {"model_gflops_per_s", flops.training() / t.median() / 1e9},
          {"gemm_peak_share", on_cpu ? Json(Timing{shares, {}}.median()) : Json(nullptr)},
          {"losses", losses},
          {"system_allocations_in_timed_steps", stats.system_allocations - system_before},
          {"peak_bytes_in_use", stats.peak_bytes_in_use}};
}

}  // namespace qkv::bench
