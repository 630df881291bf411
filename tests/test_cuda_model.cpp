// A whole model on cuda against the same model on the CPU: a tiny Seq2Seq (encoder, decoder,
// tied output projection, label-smoothed loss, dropout on) trained for three Adam steps from
// the same weights, inputs and dropout seed. Each step's loss agrees to 1e-4 relative, the
// first step's gradients norm-wise to 1e-4 per parameter, the final weights norm-wise to 1e-4.
// Except the key projections' biases: adding a constant to every key adds the same amount to a
// query's scores, which softmax ignores, so their gradient is zero in exact arithmetic and
// rounding noise on either device; Adam then turns that noise into steps of the full learning
// rate. Their gradients are only checked to be noise. Skipped in builds without CUDA
// (fails in one with CUDA but no device).
#include <algorithm>
#include <cmath>
#include <string>

#include "autograd/functions.h"
#include "autograd/tape.h"
#include "nn/seq2seq.h"
#include "ops/ops.h"
#include "optim/optimizer.h"
#include "support/cuda_compare.h"
#include "support/tiny_training.h"
#include "train/trainer.h"

namespace qkv::test {
namespace {

bool zero_gradient_in_exact_arithmetic(const std::string& name) {
  return name.ends_with("k_proj.bias");
}

// ||g|| <= 1e-5 * (||g_w|| + 1): the gradient of a key bias beside that of its key weights.
::testing::AssertionResult rounding_noise(const Tensor& g, const Tensor& g_w) {
  double norm = ops::sum_all(ops::mul(g, g)).to(Device::cpu).item();
  double norm_w = ops::sum_all(ops::mul(g_w, g_w)).to(Device::cpu).item();
  if (std::sqrt(norm) <= 1e-5 * (std::sqrt(norm_w) + 1)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "norm " << std::sqrt(norm) << " beside " << std::sqrt(norm_w) << " for the weights";
}

TEST(CudaModel, TinySeq2SeqTrainsLikeOnTheCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  nn::Seq2SeqConfig config = tiny_training_config();
  nn::Seq2Seq cpu_model(config), cuda_model(config);
  Rng init_a(5), init_b(5);
  cpu_model.init(init_a);
  cuda_model.init(init_b);
  cuda_model.to(Device::cuda);
  nn::ParamList cpu_params = cpu_model.params(), cuda_params = cuda_model.params();
  ASSERT_EQ(cpu_params.size(), cuda_params.size());
  EXPECT_EQ(cuda_params[0].second.value().device(), Device::cuda);

  Rng data(6);
  data::Batch batch = tiny_training_batch(data, config.vocab_size);
  data::Batch batch_c = batch.to(Device::cuda);
  // The mean label-smoothed cross-entropy over the targets that are not padding.
  float per_token = 1.f / float(batch.n_tgt_tokens);

  optim::Adam adam_cpu(cpu_params, {0.9f, 0.98f, 1e-9f, 0.f});
  optim::Adam adam_cuda(cuda_params, {0.9f, 0.98f, 1e-9f, 0.f});
  Rng drop_cpu(7), drop_cuda(7);  // the same dropout masks on both devices
  nn::Context ctx_cpu{true, config.dropout, &drop_cpu}, ctx_cuda{true, config.dropout, &drop_cuda};
  for (int step = 0; step < 3; ++step) {
    optim::zero_grads(cpu_params);
    optim::zero_grads(cuda_params);
    Tape tape_cpu, tape_cuda;
    Var loss_cpu, loss_cuda;
    {
      Recording rec(tape_cpu);
      loss_cpu = scale(train::batch_loss(cpu_model, batch, 0.1f, ctx_cpu), per_token);
    }
    {
      Recording rec(tape_cuda);
      loss_cuda = scale(train::batch_loss(cuda_model, batch_c, 0.1f, ctx_cuda), per_token);
    }
    EXPECT_EQ(loss_cuda.value().device(), Device::cuda);
    float want = loss_cpu.value().item(), got = loss_cuda.value().item();
    EXPECT_NEAR(got, want, 1e-4 * std::fabs(want)) << "loss at step " << step;
    tape_cpu.backward(loss_cpu);
    tape_cuda.backward(loss_cuda);
    for (size_t i = 0; i < cpu_params.size() && step == 0; ++i) {
      const std::string& name = cpu_params[i].first;
      if (zero_gradient_in_exact_arithmetic(name)) {
        const std::string weight = name.substr(0, name.size() - 4) + "weight";
        auto w = std::find_if(cuda_params.begin(), cuda_params.end(),
                              [&](const auto& p) { return p.first == weight; });
        ASSERT_NE(w, cuda_params.end()) << weight;
        EXPECT_TRUE(rounding_noise(cuda_params[i].second.grad(), w->second.grad()))
            << "gradient of " << name;
        continue;
      }
      EXPECT_TRUE(close_normwise(cuda_params[i].second.grad(), cpu_params[i].second.grad(), 1e-4))
          << "gradient of " << name;
    }
    adam_cpu.step(1e-3f, 1.f);
    adam_cuda.step(1e-3f, 1.f);
  }
  for (size_t i = 0; i < cpu_params.size(); ++i) {
    if (zero_gradient_in_exact_arithmetic(cpu_params[i].first)) continue;
    EXPECT_TRUE(close_normwise(cuda_params[i].second.value(), cpu_params[i].second.value(), 1e-4))
        << "weights of " << cpu_params[i].first << " after 3 steps";
  }
}

}  // namespace
}  // namespace qkv::test
