// Whole models against PyTorch built from torch.nn layers (tests/python/seq2seq_reference.py),
// from the same weights through safetensors: logits (relative 1e-4), each parameter's gradient
// in the first training step (relative to its own norm, kGradTol) and the losses of Adam
// training steps (relative 1e-4 each step). Dropout is off so both runs are deterministic. Also
// an encoder layer computed for its first position alone against the whole layer.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "decode/score.h"
#include "io/safetensors.h"
#include "nn/seq2seq.h"
#include "optim/optimizer.h"
#include "support/gradient_compare.h"
#include "support/python_script.h"
#include "support/torch_ref.h"

namespace qkv::test {
namespace {

std::string fresh_dir(const std::string& name) {
  std::string dir = temp_path(name);
  std::filesystem::create_directories(dir);
  return dir;
}

Tensor named(const NamedTensors& tensors, const std::string& name) {
  for (const auto& [n, t] : tensors)
    if (n == name) return t;
  ADD_FAILURE() << "the reference wrote no '" << name << "'";
  return Tensor::zeros({1});
}

// Each parameter's gradient in the first step against PyTorch's ("grad.<name>"), norm-wise
// relative to its own norm: within kGradTol. The key projections' biases get a gradient that
// is zero in exact arithmetic (softmax ignores a constant added to every score of a query), so
// rounding noise on both sides: theirs is measured against the norm of their weights' gradient.
// Measured (f32 both sides, PyTorch's own f32 kernels): at most 1.3e-5 over the tensors of the
// three models (block 7e-7, post-norm 1.3e-5 (a decoder q_proj.bias), pre-norm 1.5e-6), the key
// biases at most 1.5e-5 of their weights' gradient norm. A gradient of one bias 1% off fails
// (1e-2); the losses of 20 steps alone let it pass.
constexpr double kGradTol = 1e-4;

void expect_gradients_like_torch(const nn::ParamList& params, const NamedTensors& ref,
                                 const std::string& what) {
  for (const auto& [name, v] : params) {
    double floor = 1e-30;
    if (name.ends_with("k_proj.bias")) {
      const std::string weight = name.substr(0, name.size() - 4) + "weight";
      floor = tensor_norm(named(ref, "grad." + weight));
    }
    EXPECT_TRUE(gradient_close(name, v.grad(), named(ref, "grad." + name), kGradTol, floor))
        << what;
  }
}

// Runs `steps` Adam updates (betas 0.9/0.98, eps 1e-9, constant lr) of loss_fn, returning the
// loss before each update; first_gradients() sees the gradients of the first.
std::vector<float> train_steps(const nn::ParamList& params, float lr, int steps,
                               const std::function<Var()>& loss_fn,
                               const std::function<void()>& first_gradients) {
  optim::Adam adam(params, {0.9f, 0.98f, 1e-9f, 0.f});
  std::vector<float> losses;
  for (int s = 0; s < steps; ++s) {
    optim::zero_grads(params);
    Tape tape;
    Var loss;
    {
      Recording rec(tape);
      loss = loss_fn();
    }
    losses.push_back(loss.value().item());
    tape.backward(loss);
    if (s == 0) first_gradients();
    adam.step(lr, 1.f);
  }
  return losses;
}

// Mean label-smoothed cross-entropy over the non-padding targets (pad = 0).
Var mean_ce(const Var& logits, const Tensor& targets, float smoothing) {
  int64_t v = logits.shape().back(), count = 0;
  const int32_t* t = targets.data<int32_t>();
  for (int64_t i = 0; i < targets.numel(); ++i) count += t[i] != 0;
  Var sum = cross_entropy_sum(reshape(logits, {-1, v}), targets.reshape({-1}), 0, smoothing);
  return scale(sum, 1.f / float(count));
}

void expect_losses_close(const std::vector<float>& got, const Tensor& want) {
  std::vector<float> w = want.to_vector();
  ASSERT_EQ(got.size(), w.size());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], w[i], 1e-4 * std::fabs(w[i])) << "loss at step " << i;
}

TEST(ModelParity, TwoLayerBlockTrainsLikeTorchFor20AdamSteps) {
  Rng rng(11);
  nn::LayerShape shape{32, 4, 64, ops::Activation::relu, false, 1e-5f};
  const int64_t vocab = 29, batch = 3, len = 7;
  std::vector<nn::EncoderLayer> layers{nn::EncoderLayer(shape), nn::EncoderLayer(shape)};
  nn::Linear head(shape.d_model, vocab);
  nn::ParamList params;
  for (int i = 0; i < 2; ++i) {
    layers[i].init(rng);
    layers[i].params("layers." + std::to_string(i), params);
  }
  head.init(rng);
  head.params("head", params);

  Tensor x = randn({batch, len, shape.d_model}, rng);
  Tensor lengths = Tensor::from_vector(std::vector<int32_t>{7, 4, 1}, {batch});
  Tensor targets = rand_ids({batch, len}, vocab, rng);
  for (int64_t b = 0; b < batch; ++b)  // padding positions carry no target
    for (int64_t t = lengths.data<int32_t>()[b]; t < len; ++t)
      targets.data<int32_t>()[b * len + t] = 0;

  std::string dir = fresh_dir("block");
  save_safetensors(dir + "/weights.safetensors", nn::param_tensors(params));
  save_safetensors(dir + "/batch.safetensors",
                   {{"x", x}, {"lengths", lengths}, {"targets", targets}});
  nlohmann::json config = {
      {"d_model", shape.d_model}, {"heads", shape.heads}, {"d_ff", shape.d_ff},
      {"activation", "relu"},     {"pre_norm", false},    {"vocab_size", vocab},
      {"label_smoothing", 0.1},   {"lr", 1e-3},           {"steps", 20}};
  std::ofstream(dir + "/config.json") << config.dump();
  run_python_script("seq2seq_reference.py", "block " + dir);
  auto ref = load_safetensors(dir + "/reference.safetensors");

  nn::Context ctx;
  ops::AttentionMask mask{false, lengths};
  auto forward = [&] {
    Var h(x);
    for (auto& l : layers) h = l(h, mask, ctx);
    return head(h);
  };
  expect_close(forward().value(), named(ref, "logits"), 1e-4, "block logits");
  auto losses = train_steps(
      params, 1e-3f, 20, [&] { return mean_ce(forward(), targets, 0.1f); },
      [&] { expect_gradients_like_torch(params, ref, "block"); });
  expect_losses_close(losses, named(ref, "losses"));
}

void seq2seq_parity(nn::Seq2SeqConfig c, const std::string& name) {
  Rng rng(5);
  nn::Seq2Seq model(c);
  model.init(rng);
  // Random final bias and LayerNorm parameters so the mapping of each is exercised.
  for (auto& [pname, v] : model.params())
    if (pname.find("norm") != std::string::npos || pname == "final_logits_bias")
      Var(v).mutable_value().copy_from(randn(v.shape(), rng, 0.1f));
  const int64_t batch = 3, s = 9, t = 6;
  Tensor src = rand_ids({batch, s}, int32_t(c.vocab_size - 4), rng);
  Tensor tgt = rand_ids({batch, t + 1}, int32_t(c.vocab_size - 4), rng);
  for (int64_t i = 0; i < src.numel(); ++i) src.data<int32_t>()[i] += 4;
  for (int64_t i = 0; i < tgt.numel(); ++i) tgt.data<int32_t>()[i] += 4;
  Tensor src_lengths = Tensor::from_vector(std::vector<int32_t>{9, 5, 2}, {batch});
  Tensor tgt_in = Tensor::empty({batch, t}, DType::i32),
         tgt_out = Tensor::empty({batch, t}, DType::i32);
  std::vector<int> tgt_len{6, 3, 4};
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t j = 0; j < t; ++j) {
      tgt_in.data<int32_t>()[b * t + j] =
          j == 0 ? c.bos_id : (j < tgt_len[b] ? tgt.data<int32_t>()[b * (t + 1) + j] : c.pad_id);
      tgt_out.data<int32_t>()[b * t + j] = j + 1 < tgt_len[b]
                                               ? tgt.data<int32_t>()[b * (t + 1) + j + 1]
                                               : (j + 1 == tgt_len[b] ? c.eos_id : c.pad_id);
    }
  for (int64_t b = 0; b < batch; ++b)  // zero the padding of the source
    for (int64_t j = src_lengths.data<int32_t>()[b]; j < s; ++j)
      src.data<int32_t>()[b * s + j] = c.pad_id;

  std::string dir = fresh_dir(name);
  save_safetensors(dir + "/weights.safetensors", nn::param_tensors(model.params()));
  save_safetensors(
      dir + "/batch.safetensors",
      {{"src", src}, {"src_lengths", src_lengths}, {"tgt_in", tgt_in}, {"tgt_out", tgt_out}});
  nlohmann::json config = {{"d_model", c.d_model},
                           {"heads", c.heads},
                           {"d_ff", c.d_ff},
                           {"activation", c.activation},
                           {"pre_norm", c.pre_norm},
                           {"vocab_size", c.vocab_size},
                           {"encoder_layers", c.encoder_layers},
                           {"decoder_layers", c.decoder_layers},
                           {"tie_embeddings", c.tie_embeddings},
                           {"max_positions", c.max_positions},
                           {"label_smoothing", 0.1},
                           {"lr", 5e-4},
                           {"steps", 10}};
  std::ofstream(dir + "/config.json") << config.dump();
  run_python_script("seq2seq_reference.py", "seq2seq " + dir);
  auto ref = load_safetensors(dir + "/reference.safetensors");

  nn::Context ctx;
  expect_close(model.forward(src, src_lengths, tgt_in, ctx).value(), named(ref, "logits"), 1e-4,
               name + " logits");
  // What `qkv score` prints: the summed log-probability of each target, <eos> included.
  Tensor tgt_lengths =
      Tensor::from_vector(std::vector<int32_t>(tgt_len.begin(), tgt_len.end()), {batch});
  auto scores = decode::score_batch(model, src, src_lengths, tgt_in, tgt_out, tgt_lengths);
  std::vector<float> got(scores.begin(), scores.end());
  expect_close(Tensor::from_vector(got, {batch}), named(ref, "scores"), 1e-4, name + " scores");
  auto losses = train_steps(
      model.params(), 5e-4f, 10,
      [&] { return mean_ce(model.forward(src, src_lengths, tgt_in, ctx), tgt_out, 0.1f); },
      [&] { expect_gradients_like_torch(model.params(), ref, name); });
  expect_losses_close(losses, named(ref, "losses"));
}

nn::Seq2SeqConfig small_config() {
  nn::Seq2SeqConfig c;
  c.vocab_size = 37, c.d_model = 32, c.heads = 4, c.d_ff = 48;
  c.encoder_layers = 2, c.decoder_layers = 2, c.dropout = 0.f, c.max_positions = 64;
  return c;
}

TEST(ModelParity, Seq2SeqPostNormTiedMatchesTorch) {
  seq2seq_parity(small_config(), "postnorm");
}

TEST(ModelParity, Seq2SeqPreNormUntiedGeluMatchesTorch) {
  nn::Seq2SeqConfig c = small_config();
  c.pre_norm = true, c.tie_embeddings = false, c.activation = "gelu";
  seq2seq_parity(c, "prenorm");
}

// EncoderLayer::first_position (ViT's last layer) against the whole layer's first position, in
// both norm positions and with padding: the output and the gradients of x and of every
// parameter, from the loss sum(w * out) with random weights w (the key bias's gradient, zero in
// exact arithmetic, against its weight's gradient's norm). Measured: at most 6e-8.
void expect_first_position_like_the_whole_layer(bool pre_norm) {
  Rng rng(5);
  nn::LayerShape shape{32, 4, 64, ops::Activation::gelu, pre_norm, 1e-5f};
  const int64_t batch = 3, len = 7;
  nn::EncoderLayer layer(shape);
  layer.init(rng);
  nn::ParamList params;
  layer.params("layer", params);
  Var x(randn({batch, len, shape.d_model}, rng), true);
  ops::AttentionMask mask;
  mask.key_lengths = Tensor::from_vector(std::vector<int32_t>{7, 4, 1}, {batch});
  Var weights(randn({batch, 1, shape.d_model}, rng));
  nn::Context ctx;

  auto gradients = [&](const std::function<Var()>& first) {
    optim::zero_grads(params);
    x.clear_grad();
    Tape tape;
    Var out;
    Var loss;
    {
      Recording rec(tape);
      out = first();
      loss = sum(mul(out, weights));
    }
    tape.backward(loss);
    std::vector<Tensor> grads{out.value().clone(), x.grad().clone()};
    for (const auto& [name, v] : params) grads.push_back(v.grad().clone());
    return grads;
  };
  std::vector<Tensor> want = gradients([&] { return nn::first_position_of(layer(x, mask, ctx)); });
  std::vector<Tensor> got = gradients([&] { return layer.first_position(x, mask, ctx); });
  EXPECT_TRUE(gradient_close("output", got[0], want[0], 1e-6));
  EXPECT_TRUE(gradient_close("x", got[1], want[1], 1e-6));
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string& name = params[i].first;
    double floor = name.ends_with("k_proj.bias") ? tensor_norm(want[i + 1]) : 1e-30;  // weight's
    EXPECT_TRUE(gradient_close(name, got[i + 2], want[i + 2], 1e-6, floor));
  }
}

TEST(ModelParity, EncoderLayerFirstPositionEqualsTheWholeLayers) {
  expect_first_position_like_the_whole_layer(true);
  expect_first_position_like_the_whole_layer(false);
}

}  // namespace
}  // namespace qkv::test
