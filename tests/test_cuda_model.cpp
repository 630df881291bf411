// A whole model on cuda against the same model on the CPU: a tiny Seq2Seq (encoder, decoder,
// tied output projection, label-smoothed loss, dropout on) trained for three Adam steps from
// the same weights, inputs and dropout seed. Each step's loss agrees to 1e-4 relative, the
// first step's gradients norm-wise to 1e-4 per parameter, the final weights norm-wise to 1e-4.
// Skipped without a CUDA device.
#include "autograd/functions.h"
#include "autograd/tape.h"
#include "nn/seq2seq.h"
#include "optim/optimizer.h"
#include "support/cuda_compare.h"

namespace qkv::test {
namespace {

nn::Seq2SeqConfig tiny_config() {
  nn::Seq2SeqConfig c;
  c.vocab_size = 53;
  c.d_model = 16;
  c.heads = 2;
  c.d_ff = 40;
  c.encoder_layers = 2;
  c.decoder_layers = 2;
  c.dropout = 0.1f;
  c.max_positions = 64;
  return c;
}

struct Batch {
  Tensor src, src_lengths, tgt_in, tgt_out;
  Batch to(Device d) const { return {src.to(d), src_lengths.to(d), tgt_in.to(d), tgt_out.to(d)}; }
};

Batch make_batch(Rng& rng, int64_t vocab) {
  const int64_t batch = 3, s = 9, t = 6;
  Batch b;
  b.src = random_ids({batch, s}, rng, 4, int(vocab));
  b.src_lengths = Tensor::from_vector(std::vector<int32_t>{9, 5, 2}, {batch});
  b.tgt_in = random_ids({batch, t}, rng, 4, int(vocab));
  b.tgt_out = random_ids({batch, t}, rng, 4, int(vocab));
  for (int64_t j = 4; j < t; ++j) b.tgt_out.data<int32_t>()[2 * t + j] = 0;  // padding: ignored
  return b;
}

// Mean label-smoothed cross-entropy over the targets that are not padding (id 0).
Var loss_of(const nn::Seq2Seq& model, const Batch& b, const nn::Context& ctx, int64_t count) {
  Var logits = model.forward(b.src, b.src_lengths, b.tgt_in, ctx);  // [B, T, V]
  int64_t v = logits.shape().back();
  Var sum = cross_entropy_sum(reshape(logits, {-1, v}), b.tgt_out.reshape({-1}), 0, 0.1f);
  return scale(sum, 1.f / float(count));
}

TEST(CudaModel, TinySeq2SeqTrainsLikeOnTheCpu) {
  QKV_SKIP_WITHOUT_CUDA();
  nn::Seq2SeqConfig config = tiny_config();
  nn::Seq2Seq cpu_model(config), cuda_model(config);
  Rng init_a(5), init_b(5);
  cpu_model.init(init_a);
  cuda_model.init(init_b);
  cuda_model.to(Device::cuda);
  nn::ParamList cpu_params = cpu_model.params(), cuda_params = cuda_model.params();
  ASSERT_EQ(cpu_params.size(), cuda_params.size());
  EXPECT_EQ(cuda_params[0].second.value().device(), Device::cuda);

  Rng data(6);
  Batch batch = make_batch(data, config.vocab_size), batch_c = batch.to(Device::cuda);
  int64_t count = 0;
  for (int64_t i = 0; i < batch.tgt_out.numel(); ++i)
    count += batch.tgt_out.data<int32_t>()[i] != 0;

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
      loss_cpu = loss_of(cpu_model, batch, ctx_cpu, count);
    }
    {
      Recording rec(tape_cuda);
      loss_cuda = loss_of(cuda_model, batch_c, ctx_cuda, count);
    }
    EXPECT_EQ(loss_cuda.value().device(), Device::cuda);
    float want = loss_cpu.value().item(), got = loss_cuda.value().item();
    EXPECT_NEAR(got, want, 1e-4 * std::fabs(want)) << "loss at step " << step;
    tape_cpu.backward(loss_cpu);
    tape_cuda.backward(loss_cuda);
    for (size_t i = 0; i < cpu_params.size() && step == 0; ++i) {
      EXPECT_TRUE(close_normwise(cuda_params[i].second.grad(), cpu_params[i].second.grad(), 1e-4))
          << "gradient of " << cpu_params[i].first;
    }
    adam_cpu.step(1e-3f, 1.f);
    adam_cuda.step(1e-3f, 1.f);
  }
  for (size_t i = 0; i < cpu_params.size(); ++i)
    EXPECT_TRUE(close_normwise(cuda_params[i].second.value(), cpu_params[i].second.value(), 1e-4))
        << "weights of " << cpu_params[i].first << " after 3 steps";
}

}  // namespace
}  // namespace qkv::test
