// A ViT on cuda against the same ViT on the CPU: patchify, the patch projection, class token,
// position embeddings, pre-norm encoder layers and the classifier, forward and backward from
// the same weights and images: logits elementwise to 1e-4 and every gradient norm-wise to 1e-4,
// in f32; and under bf16 autocast (head dim 64: FlashAttention) the loss within 1e-2 and each
// gradient within 4e-2 of its own norm.
// Skipped in builds without CUDA
// (fails in one with CUDA but no device).
#include <cmath>

#include "autograd/functions.h"
#include "autograd/tape.h"
#include "nn/vit.h"
#include "ops/precision.h"
#include "optim/optimizer.h"
#include "support/cuda_compare.h"
#include "support/gradient_compare.h"

namespace qkv::test {
namespace {

nn::ViTConfig tiny_vit() {
  nn::ViTConfig c;
  c.channels = 3, c.image_size = 12, c.patch_size = 4;
  c.d_model = 128, c.heads = 2, c.d_ff = 96, c.layers = 2;  // head dim 64
  c.classes = {"a", "b", "c", "d", "e"};
  c.mean = {0.5f, 0.4f, 0.3f}, c.stddev = {0.2f, 0.25f, 0.3f};
  return c;
}

// bf16 autocast against f32 on the CPU, each gradient relative to its own norm. bf16 keeps 8
// significant bits (unit roundoff 2^-9 = 2e-3) and every matmul operand is rounded, forward
// and backward, through two layers: about ten roundings deep. Measured (emulated backend): the
// loss 3.3e-3 off, the gradients 4e-3 (classifier.bias) to 1.8e-2 (layer 0's query weights)
// of their norm; the tolerances are about twice and three times that.
constexpr double kBf16LossTol = 1e-2, kBf16GradTol = 4e-2;

// The summed cross-entropy of the logits of `images` for `labels`, recorded on `tape`.
Var vit_loss(const nn::ViT& model, const Tensor& images, const Tensor& labels, Tape& tape) {
  Recording rec(tape);
  nn::Context ctx;
  ctx.training = true;
  return cross_entropy_sum(model.forward(images, ctx), labels, -1, 0.f);
}

TEST(CudaViT, ForwardAndBackwardMatchCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  nn::ViT cpu_model(tiny_vit()), cuda_model(tiny_vit());
  Rng init_a(31), init_b(31), data(32);
  cpu_model.init(init_a);
  cuda_model.init(init_b);
  cuda_model.to(Device::cuda);
  EXPECT_EQ(cuda_model.device(), Device::cuda);
  Tensor images = uniform({3, 3, 12, 12}, data, -1.f, 1.f);
  Tensor labels = random_ids({3}, data, 0, 5);
  nn::Context ctx;
  EXPECT_TRUE(close_elementwise(cuda_model.forward(on_cuda(images), ctx).value(),
                                cpu_model.forward(images, ctx).value(), 1e-4));

  Tape tape_cpu, tape_cuda;
  Var loss_cpu = vit_loss(cpu_model, images, labels, tape_cpu);
  Var loss_cuda = vit_loss(cuda_model, on_cuda(images), on_cuda(labels), tape_cuda);
  tape_cpu.backward(loss_cpu);
  tape_cuda.backward(loss_cuda);
  EXPECT_NEAR(loss_cuda.value().item(), loss_cpu.value().item(),
              1e-4 * std::fabs(loss_cpu.value().item()));
  nn::ParamList cpu_params = cpu_model.params(), cuda_params = cuda_model.params();
  ASSERT_EQ(cpu_params.size(), cuda_params.size());
  for (size_t i = 0; i < cpu_params.size(); ++i) {
    const std::string& name = cpu_params[i].first;
    if (name.ends_with("attention.key.bias")) continue;  // zero in exact arithmetic (softmax)
    EXPECT_TRUE(close_normwise(cuda_params[i].second.grad(), cpu_params[i].second.grad(), 1e-4))
        << "gradient of " << name;
  }

  optim::zero_grads(cuda_params);
  Tape tape_bf16;
  Var loss_bf16;
  {
    ops::AutocastScope scope(ops::MatmulPrecision::bf16);
    loss_bf16 = vit_loss(cuda_model, on_cuda(images), on_cuda(labels), tape_bf16);
    tape_bf16.backward(loss_bf16);
  }
  EXPECT_NEAR(loss_bf16.value().item(), loss_cpu.value().item(),
              kBf16LossTol * std::fabs(loss_cpu.value().item()));
  for (size_t i = 0; i < cpu_params.size(); ++i) {
    const std::string& name = cpu_params[i].first;
    double floor = 1e-30;
    if (name.ends_with("attention.key.bias"))  // noise, beside the key weights' gradient
      floor = tensor_norm(grad_of(cpu_params, name.substr(0, name.size() - 4) + "weight"));
    EXPECT_TRUE(gradient_close(name, cuda_params[i].second.grad(), cpu_params[i].second.grad(),
                               kBf16GradTol, floor))
        << "under bf16 autocast";
  }
}

}  // namespace
}  // namespace qkv::test
