// The GPT family on cuda against the same model on the CPU, from the same weights and inputs:
// GPT-2-like (learned positions, LayerNorm, GELU, tied) and Llama-like (RoPE, RMSNorm, SwiGLU,
// grouped-query attention) models, dropout on with the same masks. Per model: the loss of three
// AdamW steps (1e-4 relative), the first step's gradients norm-wise per parameter (1e-4; key
// biases, whose gradient is zero in exact arithmetic, only against their weights'), and the
// inference path: prefill and KV-cache steps give the CPU's logits (1e-4). Skipped in builds
// without CUDA (fails in one with CUDA but no device).
#include <cmath>
#include <string>

#include "autograd/functions.h"
#include "autograd/tape.h"
#include "nn/gpt.h"
#include "optim/optimizer.h"
#include "support/cuda_compare.h"

namespace qkv::test {
namespace {

nn::GptConfig tiny(const std::string& preset) {
  nn::GptConfig c = nn::GptConfig::preset(preset);
  c.vocab_size = 41, c.context_length = 16, c.d_model = 32, c.layers = 2, c.heads = 4;
  c.d_ff = 48, c.dropout = 0.1f;
  if (c.kv_heads > 0) c.kv_heads = 2;
  return c;
}

Var mean_loss(const nn::Gpt& model, const Tensor& inputs, const Tensor& targets,
              const nn::Context& ctx) {
  Var logits = model.forward(inputs, ctx);
  Var sum = cross_entropy_sum(reshape(logits, {-1, model.config().vocab_size}),
                              targets.reshape({-1}), -1, 0.f);
  return scale(sum, 1.f / float(targets.numel()));
}

void expect_trains_like_the_cpu(const nn::GptConfig& c) {
  nn::Gpt cpu(c), gpu(c);
  Rng init_a(3), init_b(3);
  cpu.init(init_a);
  gpu.init(init_b);
  gpu.to(Device::cuda);
  nn::ParamList cpu_params = cpu.params(), gpu_params = gpu.params();
  Rng data(4);
  Tensor inputs = random_ids({3, 12}, data, 0, int(c.vocab_size));
  Tensor targets = random_ids({3, 12}, data, 0, int(c.vocab_size));
  Tensor inputs_c = inputs.to(Device::cuda), targets_c = targets.to(Device::cuda);
  optim::Adam adam_cpu(cpu_params, {0.9f, 0.99f, 1e-8f, 0.1f});
  optim::Adam adam_gpu(gpu_params, {0.9f, 0.99f, 1e-8f, 0.1f});
  Rng drop_cpu(7), drop_gpu(7);
  nn::Context ctx_cpu{true, c.dropout, &drop_cpu}, ctx_gpu{true, c.dropout, &drop_gpu};
  for (int step = 0; step < 3; ++step) {
    optim::zero_grads(cpu_params);
    optim::zero_grads(gpu_params);
    Tape tape_cpu, tape_gpu;
    Var loss_cpu, loss_gpu;
    {
      Recording rec(tape_cpu);
      loss_cpu = mean_loss(cpu, inputs, targets, ctx_cpu);
    }
    {
      Recording rec(tape_gpu);
      loss_gpu = mean_loss(gpu, inputs_c, targets_c, ctx_gpu);
    }
    float want = loss_cpu.value().item(), got = loss_gpu.value().item();
    EXPECT_NEAR(got, want, 1e-4 * std::fabs(want)) << c.positions << " loss at step " << step;
    tape_cpu.backward(loss_cpu);
    tape_gpu.backward(loss_gpu);
    for (size_t i = 0; i < cpu_params.size() && step == 0; ++i) {
      const std::string& name = cpu_params[i].first;
      if (name.ends_with("k_proj.bias")) continue;  // zero in exact arithmetic: noise both sides
      EXPECT_TRUE(close_normwise(gpu_params[i].second.grad(), cpu_params[i].second.grad(), 1e-4))
          << "gradient of " << name;
    }
    adam_cpu.step(1e-3f, 1.f);
    adam_gpu.step(1e-3f, 1.f);
  }
  // Inference: a prefill of two prompts of different lengths, then two steps.
  nn::PackedGpt packed_cpu = cpu.pack(), packed_gpu = gpu.pack();
  nn::KvCache cache_cpu = cpu.new_cache(2, 12), cache_gpu = gpu.new_cache(2, 12);
  Tensor prompt = random_ids({2, 5}, data, 0, int(c.vocab_size));
  std::vector<int64_t> lengths{5, 3};
  EXPECT_TRUE(close_normwise(gpu.step(prompt, lengths, cache_gpu, packed_gpu),
                             cpu.step(prompt, lengths, cache_cpu, packed_cpu), 1e-4))
      << c.positions << " prefill";
  for (int step = 0; step < 2; ++step) {
    Tensor next = random_ids({2, 1}, data, 0, int(c.vocab_size));
    EXPECT_TRUE(close_normwise(gpu.step(next, {1, 1}, cache_gpu, packed_gpu),
                               cpu.step(next, {1, 1}, cache_cpu, packed_cpu), 1e-4))
        << c.positions << " step " << step;
  }
}

TEST(CudaGpt, Gpt2LikeModelTrainsAndDecodesLikeOnTheCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  expect_trains_like_the_cpu(tiny("gpt2"));
}

TEST(CudaGpt, LlamaLikeModelTrainsAndDecodesLikeOnTheCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  expect_trains_like_the_cpu(tiny("llama-tiny"));
}

}  // namespace
}  // namespace qkv::test
