// What data-parallel training builds on, in one process: Tape::watch says a parameter's gradient
// is complete only when nothing more adds to it (checked on every family: a GPT with tied
// embeddings and MoE layers, a translation model, a ViT with its class token), and GradientSum
// adds an update's passes in batch order to the bit.
#include <gtest/gtest.h>

#include <cstring>
#include <set>

#include "nn/gpt.h"
#include "nn/seq2seq.h"
#include "nn/vit.h"
#include "ops/ops.h"
#include "support/cuda_compare.h"
#include "support/torch_ref.h"
#include "train/data_parallel.h"

namespace qkv::test {
namespace {

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  Tensor x = a.to(Device::cpu), y = b.to(Device::cpu);
  return x.shape() == y.shape() && std::memcmp(x.raw(), y.raw(), x.nbytes()) == 0;
}

std::vector<Var> trained(const nn::ParamList& params) {
  std::vector<Var> vars;
  std::set<const void*> seen;
  for (const auto& [name, p] : params)
    if (seen.insert(p.id()).second) vars.push_back(p);
  return vars;
}

// Runs loss_fn's backward with every parameter watched: each is reported once, and its gradient
// when reported is its final one (a parameter the pass did not reach has none).
template <class LossFn>
void expect_gradients_complete_when_reported(const nn::ParamList& params, LossFn loss_fn) {
  std::vector<Var> vars = trained(params);
  std::vector<Tensor> at_report(vars.size());
  std::vector<int> reports(vars.size(), 0);
  Tape tape;
  tape.watch(vars, [&](size_t i) {
    ++reports[i];
    if (vars[i].has_grad()) at_report[i] = vars[i].grad().to(Device::cpu).clone();
  });
  Var loss;
  {
    Recording rec(tape);
    loss = loss_fn();
  }
  tape.backward(loss);
  for (size_t i = 0; i < vars.size(); ++i) {
    EXPECT_EQ(reports[i], 1) << params[i].first;
    ASSERT_EQ(at_report[i].defined(), vars[i].has_grad()) << params[i].first;
    if (vars[i].has_grad()) {
      EXPECT_TRUE(bitwise_equal(at_report[i], vars[i].grad()))
          << "a gradient grew after it was reported complete";
    }
  }
}

nn::MoeOptions four_experts() {
  nn::MoeOptions m;
  m.experts = 4, m.top_k = 2, m.every = 2;
  return m;
}

TEST(GradientCompletion, GptWithTiedEmbeddingsAndExperts) {
  nn::GptConfig c = nn::GptConfig::preset("gpt-nano");
  c.vocab_size = 40, c.context_length = 16, c.d_model = 16, c.layers = 2, c.heads = 2;
  c.moe = four_experts();
  ASSERT_TRUE(c.tie_embeddings);
  nn::Gpt model(c);
  Rng rng(3);
  model.init(rng);
  Tensor ids = random_ids({2, 12}, rng, 0, 40), targets = random_ids({2, 12}, rng, 0, 40);
  nn::Context ctx;
  ctx.training = true, ctx.dropout = 0.1f, ctx.rng = &rng;
  expect_gradients_complete_when_reported(model.params(), [&] {
    return cross_entropy_sum(reshape(model.forward(ids, ctx), {-1, 40}), targets.reshape({-1}), -1,
                             0.1f);
  });
}

TEST(GradientCompletion, TranslationModel) {
  nn::Seq2SeqConfig c;
  c.vocab_size = 30, c.d_model = 16, c.heads = 2, c.d_ff = 24, c.encoder_layers = 2;
  c.decoder_layers = 2, c.max_positions = 32;
  nn::Seq2Seq model(c);
  Rng rng(4);
  model.init(rng);
  Tensor src = random_ids({2, 7}, rng, 4, 30), tgt_in = random_ids({2, 5}, rng, 4, 30);
  Tensor tgt_out = random_ids({2, 5}, rng, 4, 30);
  Tensor lengths = Tensor::from_vector(std::vector<int32_t>{7, 4}, {2});
  nn::Context ctx;
  expect_gradients_complete_when_reported(model.params(), [&] {
    return cross_entropy_sum(reshape(model.forward(src, lengths, tgt_in, ctx), {-1, 30}),
                             tgt_out.reshape({-1}), 0, 0.1f);
  });
}

TEST(GradientCompletion, VitWithExperts) {
  nn::ViTConfig c;
  c.image_size = 8, c.patch_size = 4, c.d_model = 16, c.heads = 2, c.d_ff = 24, c.layers = 2;
  c.classes = {"a", "b", "c"};
  c.moe = four_experts();
  nn::ViT model(c);
  Rng rng(5);
  model.init(rng);
  Tensor images = randn({3, 1, 8, 8}, rng), labels = random_ids({3}, rng, 0, 3);
  nn::Context ctx;
  expect_gradients_complete_when_reported(model.params(), [&] {
    return cross_entropy_sum(model.forward(images, ctx), labels, -1, 0.f);
  });
}

// Three passes through GradientSum (one rank) leave (g0 + g1) + g2 of the passes' own gradients,
// each computed from zero.
TEST(GradientSum, PassesAddInBatchOrder) {
  nn::GptConfig c = nn::GptConfig::preset("llama-tiny");
  c.vocab_size = 40, c.context_length = 16, c.d_model = 16, c.layers = 1, c.heads = 2;
  nn::Gpt model(c);
  Rng rng(6);
  model.init(rng);
  std::vector<Tensor> batches;
  for (int b = 0; b < 3; ++b) batches.push_back(random_ids({2, 9}, rng, 0, 40));
  nn::Context ctx;
  auto backward = [&](const Tensor& ids, train::GradientSum* sum, bool first, bool last) {
    Tape tape;
    if (sum) sum->begin_pass(tape, first, last);
    Var loss;
    {
      Recording rec(tape);
      loss =
          cross_entropy_sum(reshape(model.forward(ids, ctx), {-1, 40}), ids.reshape({-1}), -1, 0.f);
    }
    tape.backward(loss);
  };
  nn::ParamList params = model.params();
  std::vector<std::vector<Tensor>> each;  // [pass][param]
  for (const Tensor& ids : batches) {
    backward(ids, nullptr, false, false);
    each.emplace_back();
    for (auto& [name, p] : params) {
      each.back().push_back(p.grad().clone());
      p.clear_grad();
    }
  }
  train::GradientSum sum(params, 25);
  for (size_t b = 0; b < batches.size(); ++b)
    backward(batches[b], &sum, b == 0, b + 1 == batches.size());
  sum.finish();
  for (size_t i = 0; i < params.size(); ++i) {
    Tensor expected = each[0][i].clone();
    ops::axpy(1.f, each[1][i], expected);
    ops::axpy(1.f, each[2][i], expected);
    EXPECT_TRUE(bitwise_equal(params[i].second.grad(), expected)) << params[i].first;
  }
}

}  // namespace
}  // namespace qkv::test
