// Speed of Mixture-of-Experts layers against dense layers of the same active FLOPs, in one run.
//   bench_moe [--threads 2] [--tokens 2048] [--d-model 256] [--d-ff 512] [--experts 8]
//             [--top-k 2] [--steps 10] [--batch 16] [--json PATH]
// layer: one nn::MoeFeedForward (E experts of width d-ff, top-k, dropless, Mixtral routing)
//   forward on a tape + backward of sum(y * dy), against one dense MLP of width k * d-ff (what
//   each token computes in the MoE layer) on the same tokens; plain GELU experts and gated
//   (swiglu) ones. The router's and the routing's work is the MoE layer's overhead.
// gpt: training tokens/s of gpt-nano with MoE in every block (E experts of width d-ff, top-k)
//   against its dense twin (MLP width k * d-ff), context 128, batch `batch`, AdamW step included.
// Prints a table and writes one JSON object (stdout, or --json PATH).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "eval/lm_eval.h"
#include "io/atomic_file.h"
#include "nn/gpt.h"
#include "nn/moe.h"
#include "optim/optimizer.h"
#include "tensor/threads.h"

namespace {

using namespace qkv;
using Clock = std::chrono::steady_clock;

struct Args {
  int64_t threads = 2, tokens = 2048, d_model = 256, d_ff = 512, experts = 8, top_k = 2;
  int64_t steps = 10, batch = 16;
  std::string json;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    auto num = [&] { return std::stoll(v); };
    if (k == "--threads")
      a.threads = num();
    else if (k == "--tokens")
      a.tokens = num();
    else if (k == "--d-model")
      a.d_model = num();
    else if (k == "--d-ff")
      a.d_ff = num();
    else if (k == "--experts")
      a.experts = num();
    else if (k == "--top-k")
      a.top_k = num();
    else if (k == "--steps")
      a.steps = num();
    else if (k == "--batch")
      a.batch = num();
    else if (k == "--json")
      a.json = v;
    else {
      std::fprintf(stderr, "bench_moe: unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

// Median-free and simple: the mean seconds of `steps` runs after one warm-up run.
double seconds_per_step(int64_t steps, const std::function<void()>& step) {
  step();
  auto start = Clock::now();
  for (int64_t i = 0; i < steps; ++i) step();
  return std::chrono::duration<double>(Clock::now() - start).count() / double(steps);
}

// Forward on a tape and backward of sum(f(x) * dy).
double layer_seconds(const Args& a, const std::function<Var(const Var&)>& f, Rng& rng) {
  Tensor x = Tensor::empty({a.tokens, a.d_model}), dy = Tensor::empty({a.tokens, a.d_model});
  rng.normal(x), rng.normal(dy);
  Var input(x, true), upstream(dy);
  return seconds_per_step(a.steps, [&] {
    Tape tape;
    Var loss;
    {
      Recording rec(tape);
      loss = sum(mul(f(input), upstream));
    }
    tape.backward(loss);
  });
}

struct LayerResult {
  double moe_s, dense_s;
};

LayerResult bench_layer(const Args& a, bool gated, Rng& rng) {
  nn::MoeOptions o;
  o.experts = a.experts, o.top_k = a.top_k;
  ops::Activation act = gated ? ops::Activation::silu : ops::Activation::gelu;
  nn::MoeFeedForward moe(o, nn::MoeNames::mixtral, a.d_model, a.d_ff, act, gated, false);
  moe.init(rng);
  nn::Linear w1(a.d_model, a.top_k * a.d_ff, false), w3, w2(a.top_k * a.d_ff, a.d_model, false);
  if (gated) w3 = nn::Linear(a.d_model, a.top_k * a.d_ff, false), w3.init(rng);
  w1.init(rng), w2.init(rng);
  nn::Context ctx;
  ctx.training = true;
  LayerResult r;
  r.moe_s = layer_seconds(
      a, [&](const Var& x) { return moe(x, ctx); }, rng);
  r.dense_s = layer_seconds(
      a,
      [&](const Var& x) {
        Var h = activation(act, w1(x));
        if (gated) h = mul(h, w3(x));
        return w2(h);
      },
      rng);
  return r;
}

// Training tokens/s of gpt-nano (context 128) with the given MLP.
double gpt_tokens_per_s(const Args& a, const nn::MoeOptions& moe, int64_t d_ff, Rng& rng) {
  nn::GptConfig c = nn::GptConfig::preset("gpt-nano");
  c.vocab_size = 65, c.context_length = 128, c.d_ff = d_ff, c.moe = moe;
  nn::Gpt model(c);
  model.init(rng);
  nn::ParamList params = model.params();
  optim::Adam adam(params, {0.9f, 0.99f, 1e-8f, 0.1f});
  std::vector<int32_t> ids(size_t(a.batch * c.context_length));
  for (int32_t& id : ids) id = int32_t(rng.below(65));
  Tensor inputs = Tensor::from_vector(ids, {a.batch, c.context_length});
  Tensor targets = inputs.clone();
  nn::MoeRecord record;
  nn::Context ctx;
  ctx.training = true, ctx.moe = &record;
  double s = seconds_per_step(a.steps, [&] {
    record.clear();
    Tape tape;
    Var loss;
    {
      Recording rec(tape);
      loss = eval::lm_loss_sum(model, inputs, targets, 0.f, ctx);
      for (const nn::MoeLayerRecord& l : record.layers) loss = add(loss, l.aux_loss);
    }
    tape.backward(loss);
    optim::clipped_update(adam, params, loss.value().item(), a.batch * c.context_length, 1e-3f,
                          1.f);
  });
  return double(a.batch * c.context_length) / s;
}

}  // namespace

int main(int argc, char** argv) {
  Args a = parse(argc, argv);
  set_num_threads(int(a.threads));
  Rng rng(1);
  LayerResult plain = bench_layer(a, false, rng), gated = bench_layer(a, true, rng);
  nn::MoeOptions moe, dense;
  moe.experts = a.experts, moe.top_k = a.top_k;
  double moe_rate = gpt_tokens_per_s(a, moe, a.d_ff, rng);
  double dense_rate = gpt_tokens_per_s(a, dense, a.top_k * a.d_ff, rng);

  std::printf("MoE E=%lld top-%lld, %lld tokens, d-model %lld, expert d-ff %lld, %lld threads\n",
              (long long)a.experts, (long long)a.top_k, (long long)a.tokens, (long long)a.d_model,
              (long long)a.d_ff, (long long)a.threads);
  std::printf("%-34s %10s %10s %7s\n", "forward + backward", "MoE ms", "dense ms", "ratio");
  for (auto [name, r] : {std::pair{"layer, GELU experts", plain}, {"layer, SwiGLU experts", gated}})
    std::printf("%-34s %10.2f %10.2f %7.2f\n", name, 1e3 * r.moe_s, 1e3 * r.dense_s,
                r.moe_s / r.dense_s);
  std::printf("%-34s %10.0f %10.0f %7.2f\n", "gpt-nano training tokens/s", moe_rate, dense_rate,
              dense_rate / moe_rate);
  char json[1024];
  std::snprintf(json, sizeof json,
                "{\"experts\": %lld, \"top_k\": %lld, \"tokens\": %lld, \"d_model\": %lld, "
                "\"d_ff\": %lld, \"threads\": %lld, \"layer_gelu\": {\"moe_ms\": %.3f, "
                "\"dense_ms\": %.3f, \"ratio\": %.3f}, \"layer_swiglu\": {\"moe_ms\": %.3f, "
                "\"dense_ms\": %.3f, \"ratio\": %.3f}, \"gpt_nano_train\": {\"moe_tokens_per_s\": "
                "%.1f, \"dense_tokens_per_s\": %.1f}}\n",
                (long long)a.experts, (long long)a.top_k, (long long)a.tokens, (long long)a.d_model,
                (long long)a.d_ff, (long long)a.threads, 1e3 * plain.moe_s, 1e3 * plain.dense_s,
                plain.moe_s / plain.dense_s, 1e3 * gated.moe_s, 1e3 * gated.dense_s,
                gated.moe_s / gated.dense_s, moe_rate, dense_rate);
  if (a.json.empty())
    std::fputs(json, stdout);
  else
    write_file_atomic(a.json, json);
  return 0;
}
