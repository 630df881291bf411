// Mixture of Experts on cuda against the CPU, from the same weights and inputs: the logsumexp
// kernels (the router z-loss), one nn::MoeFeedForward (Switch top-1 and Mixtral top-2 routing,
// dropless, with capacity, with router jitter, with experts left without tokens), and GPT models
// with MoE blocks (training step and packed decoding). Tolerances: logsumexp elementwise
// |cuda - cpu| <= 1e-5 * (|cpu| + 1); the layer's output, losses and every gradient norm-wise
// 1e-5 (measured: at most 4e-7 on the emulation), and a second cuda run gives the same bits;
// the GPT models as tests/test_cuda_gpt.cpp (1e-4; measured: at most 4e-7). Routing (choices
// per expert, dropped assignments) is the same exactly. Under bf16 autocast the router still
// computes in f32: its losses, and its product's output and gradients, equal the f32 run's bit
// for bit while the experts' output moves by bf16's rounding. Skipped in builds without CUDA
// (fails in one with CUDA but no device).
#include <cmath>
#include <string>

#include "autograd/functions.h"
#include "autograd/tape.h"
#include "nn/gpt.h"
#include "nn/moe.h"
#include "nn/params.h"
#include "ops/ops.h"
#include "ops/precision.h"
#include "optim/optimizer.h"
#include "support/cuda_compare.h"

namespace qkv::test {
namespace {

using ops::AutocastScope;
using ops::MatmulPrecision;

TEST(CudaLogsumexp, ForwardAndBackwardMatchCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(31);
  const std::vector<Shape> shapes = {{1, 1},    {7, 3},     {33, 65},  {1001, 511},
                                     {3, 1025}, {2, 5, 33}, {1, 4099}, {1000, 1}};
  for (const Shape& shape : shapes)
    for (float spread : {1.f, 30.f, 1e4f}) {  // 1e4: exp overflows without the max shift
      Tensor x = uniform(shape, rng, -spread, spread);
      Tensor y = ops::logsumexp_forward(x);
      EXPECT_TRUE(close_elementwise(ops::logsumexp_forward(on_cuda(x)), y))
          << shape_str(shape) << " spread " << spread;
      // Backward accumulates into dx; from the CPU's y, so that only the kernel is compared.
      Tensor dy = uniform(y.shape(), rng), dx = uniform(shape, rng), dx_c = on_cuda(dx);
      ops::logsumexp_backward(dy, x, y, dx);
      ops::logsumexp_backward(on_cuda(dy), on_cuda(x), on_cuda(y), dx_c);
      EXPECT_TRUE(close_elementwise(dx_c, dx)) << "dx " << shape_str(shape) << " spread " << spread;
    }
  // Row 0 only -inf: -inf and no gradient; row 1 half -inf: those entries get none.
  std::vector<float> v(2 * 65, -INFINITY);
  for (size_t c = 65; c < v.size(); c += 2) v[c] = float(c % 7);
  Tensor x = Tensor::from_vector(v, {2, 65});
  Tensor y = ops::logsumexp_forward(x), y_c = ops::logsumexp_forward(on_cuda(x));
  EXPECT_EQ(y_c.to_vector()[0], -INFINITY);
  EXPECT_TRUE(close_elementwise(y_c, y));
  Tensor dy = uniform({2}, rng), dx = uniform({2, 65}, rng), dx_c = on_cuda(dx);
  ops::logsumexp_backward(dy, x, y, dx);
  ops::logsumexp_backward(on_cuda(dy), on_cuda(x), on_cuda(y), dx_c);
  EXPECT_TRUE(close_elementwise(dx_c, dx));
}

// What one forward and backward pass of an MoE layer gives, on the host.
struct MoeRun {
  Tensor y;  // [B, L, d]
  Tensor aux, z;
  std::vector<int64_t> expert_choices;
  int64_t dropped = 0;
  std::vector<std::pair<std::string, Tensor>> grads;  // "x", then every parameter's
};

// loss = sum(y * dy) + 3 aux + 0.5 z, so that the routers' losses weigh in the gradients. The
// jitter's noise comes from a fixed seed (drawn on the host, the same for both devices).
MoeRun run_layer(const nn::MoeFeedForward& layer, const Tensor& x, const Tensor& dy,
                 float jitter = 0.f) {
  const Device device = layer.router.weight.value().device();
  nn::ParamList params;
  layer.params("layer", params);
  nn::MoeRecord record;
  Rng noise(35);
  nn::Context ctx{true, 0.f, &noise};
  ctx.moe = &record, ctx.moe_jitter = jitter;
  Var xv(x.to(device), true), y;
  Tape tape;
  Var loss;
  {
    Recording rec(tape);
    y = layer(xv, ctx);
    const nn::MoeLayerRecord& r = record.layers.at(0);
    loss = add(sum(mul(y, Var(dy.to(device)))), add(scale(r.aux_loss, 3.f), scale(r.z_loss, 0.5f)));
  }
  tape.backward(loss);
  const nn::MoeLayerRecord& r = record.layers.at(0);
  MoeRun run{y.value().to(Device::cpu),
             r.aux_loss.value().to(Device::cpu),
             r.z_loss.value().to(Device::cpu),
             r.expert_choices,
             r.dropped,
             {}};
  run.grads.emplace_back("x", xv.grad().to(Device::cpu));
  for (const auto& [name, p] : params) {
    run.grads.emplace_back(name, p.grad().to(Device::cpu));
    p.clear_grad();
  }
  return run;
}

nn::MoeFeedForward random_layer(const nn::MoeOptions& options, bool gated, bool bias) {
  ops::Activation act = gated ? ops::Activation::silu : ops::Activation::gelu;
  nn::MoeFeedForward layer(options, nn::MoeNames::mixtral, 16, 24, act, gated, bias);
  Rng rng(32);
  layer.init(rng);
  return layer;
}

struct LayerCase {
  nn::MoeOptions options;
  Shape x;  // [B, L, 16]
  float jitter = 0.f;
};

TEST(CudaMoe, FeedForwardRoutesAndTrainsLikeOnTheCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(33);
  // Capacity factors 0.5 and 0.75 leave each expert fewer places than its tokens want; 8
  // experts for 3 or 2 tokens leave some experts without any.
  const std::vector<LayerCase> cases = {
      {{4, 1, 1, 0.0}, {3, 7, 16}},       {{4, 2, 1, 0.0}, {3, 7, 16}},
      {{4, 1, 1, 0.5}, {3, 7, 16}},       {{4, 2, 1, 0.75}, {3, 7, 16}},
      {{4, 2, 1, 0.0}, {3, 7, 16}, 0.2f}, {{8, 1, 1, 0.0}, {1, 3, 16}},
      {{8, 2, 1, 0.0}, {2, 1, 16}}};
  for (const LayerCase& c : cases)
    for (bool gated : {false, true}) {
      const nn::MoeOptions& o = c.options;
      std::string what = "E " + std::to_string(o.experts) + " k " + std::to_string(o.top_k) +
                         " capacity " + std::to_string(o.capacity_factor) + " jitter " +
                         std::to_string(c.jitter) + (gated ? " swiglu" : " gelu");
      nn::MoeFeedForward layer = random_layer(o, gated, !gated);
      Tensor x = uniform(c.x, rng), dy = uniform(c.x, rng);
      MoeRun cpu = run_layer(layer, x, dy, c.jitter);
      nn::ParamList params;
      layer.params("layer", params);
      nn::move_params(params, Device::cuda);
      MoeRun gpu = run_layer(layer, x, dy, c.jitter), again = run_layer(layer, x, dy, c.jitter);

      EXPECT_EQ(gpu.expert_choices, cpu.expert_choices) << what;
      EXPECT_EQ(gpu.dropped, cpu.dropped) << what;
      EXPECT_TRUE(o.capacity_factor == 0 || cpu.dropped > 0) << what << ": nothing dropped";
      EXPECT_TRUE(close_normwise(gpu.y, cpu.y)) << what;
      EXPECT_TRUE(identical(again.y, gpu.y)) << what << ": not deterministic";
      EXPECT_TRUE(close_normwise(gpu.aux, cpu.aux)) << what << " aux loss";
      EXPECT_TRUE(close_normwise(gpu.z, cpu.z)) << what << " z loss";
      ASSERT_EQ(gpu.grads.size(), cpu.grads.size());
      for (size_t i = 0; i < cpu.grads.size(); ++i) {
        const auto& [name, want] = cpu.grads[i];
        EXPECT_TRUE(close_normwise(gpu.grads[i].second, want)) << what << " gradient of " << name;
        EXPECT_TRUE(identical(again.grads[i].second, gpu.grads[i].second))
            << what << " gradient of " << name << ": not deterministic";
      }
    }
}

// Within bf16's rounding of the f32 result (1e-2), and further from it than f32 would be (1e-6).
::testing::AssertionResult bf16_close(const Tensor& got, const Tensor& want) {
  ::testing::AssertionResult near = close_normwise(got, want, 1e-2);
  if (!near) return near;
  if (close_normwise(got, want, 1e-6))
    return ::testing::AssertionFailure() << "as close as f32: bf16 was not used";
  return ::testing::AssertionSuccess();
}

// On cuda under `precision`: {y = x w^T, dx, dw} of sum(y * dy), from linear_in_f32 or linear.
std::vector<Tensor> product_and_gradients(bool in_f32, MatmulPrecision precision, const Tensor& x,
                                          const Tensor& w, const Tensor& dy) {
  AutocastScope autocast(precision);
  Var xv(on_cuda(x), true), wv(on_cuda(w), true), y;
  Tape tape;
  Var loss;
  {
    Recording rec(tape);
    y = in_f32 ? linear_in_f32(xv, wv) : linear(xv, wv, Var());
    loss = sum(mul(y, Var(on_cuda(dy))));
  }
  tape.backward(loss);
  return {y.value(), xv.grad(), wv.grad()};
}

TEST(CudaMoe, RouterComputesInF32UnderBf16Autocast) {
  QKV_SKIP_WITHOUT_CUDA();
  Rng rng(34);
  nn::MoeFeedForward layer = random_layer({4, 2, 1, 0.0}, true, false);
  nn::ParamList params;
  layer.params("layer", params);
  nn::move_params(params, Device::cuda);
  Tensor x = uniform({2, 9, 16}, rng), dy = uniform({2, 9, 16}, rng);
  MoeRun f32 = run_layer(layer, x, dy), bf16;
  {
    AutocastScope autocast(MatmulPrecision::bf16);
    bf16 = run_layer(layer, x, dy);
  }
  // The losses are functions of the router's logits alone.
  EXPECT_TRUE(identical(bf16.aux, f32.aux)) << "aux loss";
  EXPECT_TRUE(identical(bf16.z, f32.z)) << "z loss";
  EXPECT_EQ(bf16.expert_choices, f32.expert_choices);
  EXPECT_TRUE(bf16_close(bf16.y, f32.y)) << "experts' output";
  // The router's product itself, forward and backward, against a plain linear layer.
  Tensor w = layer.router.weight.value().to(Device::cpu), rows = x.reshape({18, 16});
  Tensor dlogits = uniform({18, 4}, rng);
  std::vector<Tensor> want = product_and_gradients(false, MatmulPrecision::f32, rows, w, dlogits);
  std::vector<Tensor> routed = product_and_gradients(true, MatmulPrecision::bf16, rows, w, dlogits);
  std::vector<Tensor> plain = product_and_gradients(false, MatmulPrecision::bf16, rows, w, dlogits);
  const char* names[] = {"logits", "dx", "dw"};
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_TRUE(identical(routed[i], want[i])) << "linear_in_f32 " << names[i];
    EXPECT_TRUE(bf16_close(plain[i], want[i])) << "linear " << names[i];
  }
}

nn::GptConfig tiny_moe(const std::string& preset, const nn::MoeOptions& moe) {
  nn::GptConfig c = nn::GptConfig::preset(preset);
  c.vocab_size = 41, c.context_length = 16, c.d_model = 32, c.layers = 2, c.heads = 4;
  c.d_ff = 48, c.dropout = 0.1f;
  if (c.kv_heads > 0) c.kv_heads = 2;
  c.moe = moe;
  return c;
}

// Mean cross-entropy + 0.01 * aux + 0.001 * z (the trainer's default weights), each loss a mean
// over the MoE layers.
Var training_loss(const nn::Gpt& model, const Tensor& inputs, const Tensor& targets,
                  const nn::Context& ctx) {
  Var logits = model.forward(inputs, ctx);
  Var ce = scale(cross_entropy_sum(reshape(logits, {-1, model.config().vocab_size}),
                                   targets.reshape({-1}), -1, 0.f),
                 1.f / float(targets.numel()));
  float per_layer = 1.f / float(ctx.moe->layers.size());
  for (const nn::MoeLayerRecord& l : ctx.moe->layers)
    ce = add(ce, add(scale(l.aux_loss, 0.01f * per_layer), scale(l.z_loss, 0.001f * per_layer)));
  return ce;
}

void expect_moe_gpt_like_the_cpu(const nn::GptConfig& c) {
  nn::Gpt cpu(c), gpu(c);
  Rng init_a(3), init_b(3);
  cpu.init(init_a);
  gpu.init(init_b);
  gpu.to(Device::cuda);
  nn::ParamList cpu_params = cpu.params(), gpu_params = gpu.params();
  Rng data(4);
  Tensor inputs = random_ids({3, 12}, data, 0, int(c.vocab_size));
  Tensor targets = random_ids({3, 12}, data, 0, int(c.vocab_size));
  Tensor inputs_c = on_cuda(inputs), targets_c = on_cuda(targets);
  nn::Context eval;
  EXPECT_TRUE(
      close_normwise(gpu.forward(inputs_c, eval).value(), cpu.forward(inputs, eval).value(), 1e-4))
      << "logits before training";

  // One AdamW step, dropout on with the same masks, capacity applied (training).
  optim::Adam adam_cpu(cpu_params, {0.9f, 0.99f, 1e-8f, 0.1f});
  optim::Adam adam_gpu(gpu_params, {0.9f, 0.99f, 1e-8f, 0.1f});
  Rng drop_cpu(7), drop_gpu(7);
  nn::MoeRecord record_cpu, record_gpu;
  nn::Context ctx_cpu{true, c.dropout, &drop_cpu}, ctx_gpu{true, c.dropout, &drop_gpu};
  ctx_cpu.moe = &record_cpu, ctx_gpu.moe = &record_gpu;
  Tape tape_cpu, tape_gpu;
  Var loss_cpu, loss_gpu;
  {
    Recording rec(tape_cpu);
    loss_cpu = training_loss(cpu, inputs, targets, ctx_cpu);
  }
  {
    Recording rec(tape_gpu);
    loss_gpu = training_loss(gpu, inputs_c, targets_c, ctx_gpu);
  }
  float want = loss_cpu.value().item(), got = loss_gpu.value().item();
  EXPECT_NEAR(got, want, 1e-4 * std::fabs(want)) << "training loss";
  ASSERT_EQ(record_gpu.layers.size(), record_cpu.layers.size());
  for (size_t i = 0; i < record_cpu.layers.size(); ++i) {
    EXPECT_EQ(record_gpu.layers[i].expert_choices, record_cpu.layers[i].expert_choices) << i;
    EXPECT_EQ(record_gpu.layers[i].dropped, record_cpu.layers[i].dropped) << i;
  }
  tape_cpu.backward(loss_cpu);
  tape_gpu.backward(loss_gpu);
  for (size_t i = 0; i < cpu_params.size(); ++i) {
    const std::string& name = cpu_params[i].first;
    if (name.ends_with("k_proj.bias")) continue;  // zero in exact arithmetic: noise both sides
    EXPECT_TRUE(close_normwise(gpu_params[i].second.grad(), cpu_params[i].second.grad(), 1e-4))
        << "gradient of " << name;
  }
  adam_cpu.step(1e-3f, 1.f);
  adam_gpu.step(1e-3f, 1.f);
  EXPECT_TRUE(
      close_normwise(gpu.forward(inputs_c, eval).value(), cpu.forward(inputs, eval).value(), 1e-4))
      << "logits after one step";

  // Packed decoding: a prefill of two prompts of different lengths, then two steps.
  nn::PackedGpt packed_cpu = cpu.pack(), packed_gpu = gpu.pack();
  nn::KvCache cache_cpu = cpu.new_cache(2, 12), cache_gpu = gpu.new_cache(2, 12);
  Tensor prompt = random_ids({2, 5}, data, 0, int(c.vocab_size));
  std::vector<int64_t> lengths{5, 3};
  EXPECT_TRUE(close_normwise(gpu.step(prompt, lengths, cache_gpu, packed_gpu),
                             cpu.step(prompt, lengths, cache_cpu, packed_cpu), 1e-4))
      << "prefill";
  for (int step = 0; step < 2; ++step) {
    Tensor next = random_ids({2, 1}, data, 0, int(c.vocab_size));
    EXPECT_TRUE(close_normwise(gpu.step(next, {1, 1}, cache_gpu, packed_gpu),
                               cpu.step(next, {1, 1}, cache_cpu, packed_cpu), 1e-4))
        << "step " << step;
  }
}

TEST(CudaMoeGpt, Gpt2LikeSwitchModelWithCapacityTrainsAndDecodesLikeOnTheCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  // Top-1 in the second layer only, with capacity.
  expect_moe_gpt_like_the_cpu(tiny_moe("gpt2", {4, 1, 2, 1.0}));
}

TEST(CudaMoeGpt, LlamaLikeMixtralModelTrainsAndDecodesLikeOnTheCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  // Top-2 SwiGLU experts in every layer, dropless.
  expect_moe_gpt_like_the_cpu(tiny_moe("llama-tiny", {4, 2, 1, 0.0}));
}

}  // namespace
}  // namespace qkv::test
