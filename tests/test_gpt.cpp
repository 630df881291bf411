// The GPT family (nn::Gpt) against a PyTorch reference written from the published GPT-2 and
// Llama definitions (tests/python/gpt_reference.py, float64), from the same weights: logits
// (relative 1e-4), each parameter's gradient for the first step (relative to its own norm,
// 1e-4) and the losses of ten AdamW steps (relative 1e-4 each). Then the inference path: a KV
// cache filled by a prefill of prompts of different lengths and one token at a time gives the
// logits of the full forward pass (1e-4), and the cache helpers keep and copy rows.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "nn/gpt.h"
#include "optim/optimizer.h"
#include "support/gradient_compare.h"
#include "support/python_script.h"
#include "support/torch_ref.h"

namespace qkv::test {
namespace {

Tensor named(const NamedTensors& tensors, const std::string& name) {
  for (const auto& [n, t] : tensors)
    if (n == name) return t;
  ADD_FAILURE() << "the reference wrote no '" << name << "'";
  return Tensor::zeros({1});
}

nn::GptConfig small(const std::string& preset) {
  nn::GptConfig c = nn::GptConfig::preset(preset);
  c.vocab_size = 37, c.context_length = 16, c.d_model = 32, c.layers = 2, c.heads = 4;
  c.d_ff = 48;
  if (c.kv_heads > 0) c.kv_heads = 2;
  return c;
}

// Random weights, norms (around 1) and biases included, so the mapping of each is exercised.
nn::Gpt random_model(const nn::GptConfig& c, uint64_t seed) {
  nn::Gpt model(c);
  Rng rng(seed);
  model.init(rng);
  for (auto& [name, v] : model.params()) {
    if (v.shape().size() != 1) continue;
    Tensor noise = randn(v.shape(), rng, 0.1f);
    if (name.ends_with("norm.weight")) noise = ops::add(noise, Tensor::full(v.shape(), 1.f));
    Var(v).mutable_value().copy_from(noise);
  }
  return model;
}

void expect_parity_with_reference(const nn::GptConfig& c, const std::string& name) {
  nn::Gpt model = random_model(c, 3);
  Rng rng(4);
  const int64_t batch = 3, len = 11;
  Tensor inputs = rand_ids({batch, len}, int32_t(c.vocab_size), rng);
  Tensor targets = rand_ids({batch, len}, int32_t(c.vocab_size), rng);
  int64_t count = batch * len - 3;
  for (int64_t i : {4, 17, 32}) targets.data<int32_t>()[i] = -1;  // not scored

  std::string dir = temp_path("gpt_" + name);
  std::filesystem::create_directories(dir);
  nn::ParamList params = model.params();
  save_safetensors(dir + "/weights.safetensors", nn::param_tensors(params));
  save_safetensors(dir + "/batch.safetensors", {{"inputs", inputs}, {"targets", targets}});
  const float lr = 3e-3f, decay = 0.1f;
  nlohmann::json config = {{"layers", c.layers},
                           {"heads", c.heads},
                           {"kv_heads", c.kv_heads},
                           {"positions", c.positions},
                           {"rope_theta", c.rope_theta},
                           {"norm", c.norm},
                           {"norm_eps", c.norm_eps},
                           {"mlp", c.mlp},
                           {"tie_embeddings", c.tie_embeddings},
                           {"lr", lr},
                           {"weight_decay", decay},
                           {"steps", 10}};
  std::ofstream(dir + "/config.json") << config.dump();
  run_python_script("gpt_reference.py", dir);
  auto ref = load_safetensors(dir + "/reference.safetensors");

  expect_close(model.forward(inputs, {}).value(), named(ref, "logits"), 1e-4, name + " logits");
  optim::Adam adam(params, {0.9f, 0.99f, 1e-8f, decay});
  std::vector<float> want = named(ref, "losses").to_vector();
  for (size_t step = 0; step < want.size(); ++step) {
    optim::zero_grads(params);
    Tape tape;
    Var loss;
    {
      Recording rec(tape);
      Var logits = model.forward(inputs, {});
      loss = scale(
          cross_entropy_sum(reshape(logits, {-1, c.vocab_size}), targets.reshape({-1}), -1, 0.f),
          1.f / float(count));
    }
    EXPECT_NEAR(loss.value().item(), want[step], 1e-4 * want[step]) << name << " step " << step;
    tape.backward(loss);
    if (step == 0) {
      for (const auto& [pname, v] : params) {
        // A key bias gets a gradient that is zero in exact arithmetic (softmax ignores a
        // constant added to a query's scores): rounding noise, measured against its weight's.
        double floor = 1e-30;
        if (pname.ends_with("k_proj.bias"))
          floor = tensor_norm(named(ref, "grad." + pname.substr(0, pname.size() - 4) + "weight"));
        EXPECT_TRUE(gradient_close(pname, v.grad(), named(ref, "grad." + pname), 1e-4, floor))
            << name;
      }
    }
    adam.step(lr, 1.f);
  }
}

TEST(Gpt, Gpt2MatchesTheReference) {
  expect_parity_with_reference(small("gpt2"), "gpt2");
}

TEST(Gpt, LlamaWithGroupedQueryAttentionMatchesTheReference) {
  expect_parity_with_reference(small("llama-tiny"), "llama");
}

TEST(Gpt, MultiQueryExactGeluRopeWithLayerNormMatchesTheReference) {
  nn::GptConfig c = small("gpt-nano");
  c.kv_heads = 1, c.positions = "rope", c.rope_theta = 500000, c.tie_embeddings = false;
  expect_parity_with_reference(c, "mqa");
}

// Logits [B, V] of row r's token at position `at` from a full forward pass.
std::vector<float> forward_row(const nn::Gpt& model, const std::vector<int32_t>& ids, size_t at) {
  Tensor x = Tensor::from_vector(std::vector<int32_t>(ids.begin(), ids.begin() + at + 1),
                                 {1, int64_t(at + 1)});
  Tensor logits = model.forward(x, {}).value();  // [1, at + 1, V]
  int64_t v = model.config().vocab_size;
  std::vector<float> all = logits.to_vector();
  return std::vector<float>(all.end() - v, all.end());
}

void expect_rows_close(const std::vector<float>& got, const std::vector<float>& want,
                       const std::string& what) {
  Shape s{int64_t(got.size())};
  expect_close(Tensor::from_vector(got, s), Tensor::from_vector(want, s), 1e-4, what);
}

void expect_cache_matches_forward(const nn::GptConfig& c) {
  nn::Gpt model = random_model(c, 9);
  Rng rng(10);
  std::vector<std::vector<int32_t>> seqs;
  for (int r = 0; r < 2; ++r) {
    Tensor t = rand_ids({12}, int32_t(c.vocab_size), rng);
    seqs.emplace_back(t.data<int32_t>(), t.data<int32_t>() + 12);
  }
  std::vector<int64_t> prompt{5, 2};
  nn::KvCache cache = model.new_cache(2, 12);
  nn::PackedGpt packed = model.pack();
  std::vector<int32_t> ids(2 * 5, 0);
  for (int r = 0; r < 2; ++r)
    for (int64_t j = 0; j < prompt[r]; ++j) ids[r * 5 + j] = seqs[r][j];
  Tensor logits = model.step(Tensor::from_vector(ids, {2, 5}), prompt, cache, packed);
  int64_t v = c.vocab_size;
  for (int r = 0; r < 2; ++r) {
    std::vector<float> all = logits.to_vector();
    expect_rows_close(std::vector<float>(all.begin() + r * v, all.begin() + (r + 1) * v),
                      forward_row(model, seqs[r], size_t(prompt[r] - 1)), c.positions + " prefill");
  }
  for (int step = 0; step < 6; ++step) {
    std::vector<int32_t> next{seqs[0][prompt[0] + step], seqs[1][prompt[1] + step]};
    logits = model.step(Tensor::from_vector(next, {2, 1}), {1, 1}, cache, packed);
    std::vector<float> all = logits.to_vector();
    for (int r = 0; r < 2; ++r)
      expect_rows_close(std::vector<float>(all.begin() + r * v, all.begin() + (r + 1) * v),
                        forward_row(model, seqs[r], size_t(prompt[r] + step)),
                        c.positions + " step " + std::to_string(step));
  }
  // Row 1 alone, then copied into a fresh cache's row 0: the same next logits.
  nn::keep_cache_rows(cache, {1});
  nn::KvCache other = model.new_cache(1, 12);
  nn::copy_cache_row(cache, 0, other, 0);
  EXPECT_EQ(other.lengths[0], prompt[1] + 6);
  int32_t token = seqs[1][prompt[1] + 6];
  std::vector<float> kept =
      model.step(Tensor::from_vector(std::vector<int32_t>{token}, {1, 1}), {1}, other, packed)
          .to_vector();
  expect_rows_close(kept, forward_row(model, seqs[1], size_t(prompt[1] + 6)), "copied row");
}

TEST(Gpt, KvCacheStepsGiveTheLogitsOfTheFullForwardPass) {
  expect_cache_matches_forward(small("gpt2"));
  expect_cache_matches_forward(small("llama-tiny"));
}

TEST(Gpt, CacheRefusesToOverflowAndSeveralTokensAfterThePrefill) {
  nn::Gpt model = random_model(small("gpt2"), 1);
  nn::KvCache cache = model.new_cache(1, 4);
  nn::PackedGpt packed = model.pack();
  Tensor three = Tensor::from_vector(std::vector<int32_t>{1, 2, 3}, {1, 3});
  model.step(three, {3}, cache, packed);
  EXPECT_THROW(model.step(three, {3}, cache, packed), std::invalid_argument);
  Tensor one = Tensor::from_vector(std::vector<int32_t>{1}, {1, 1});
  model.step(one, {1}, cache, packed);
  EXPECT_THROW(model.step(one, {1}, cache, packed), std::invalid_argument);
  EXPECT_THROW(model.new_cache(1, 17), std::invalid_argument);  // beyond the context
}

TEST(Gpt, ConfigErrorsNameTheValue) {
  auto fails_with = [](nn::GptConfig c, const std::string& text) {
    try {
      c.check("model");
      ADD_FAILURE() << "accepted: " << text;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  nn::GptConfig c = small("gpt2");
  auto with = [&](auto edit) {
    nn::GptConfig copy = c;
    edit(copy);
    return copy;
  };
  fails_with(with([](auto& x) { x.context_length = 0; }), "context-length must be positive, not 0");
  fails_with(with([](auto& x) { x.kv_heads = 3; }), "kv-heads 3");
  fails_with(with([](auto& x) { x.heads = 5; }), "heads 5");
  fails_with(with([](auto& x) { x.positions = "alibi"; }), "'alibi'");
  fails_with(with([](auto& x) { x.mlp = "relu"; }), "'relu'");
  fails_with(with([](auto& x) { x.norm = "batchnorm"; }), "'batchnorm'");
  fails_with(with([](auto& x) { x.eos_id = 37; }), "eos-id 37");
  fails_with(with([](auto& x) { x.stop_ids = {3, 37}; }), "stop-ids: 37 is outside");
  EXPECT_THROW(nn::GptConfig::preset("gpt-huge"), std::invalid_argument);
}

TEST(Gpt, ParameterNamesAreLlamas) {
  nn::ParamList params = nn::Gpt(small("llama-tiny")).params();
  std::vector<std::string> names;
  for (const auto& [name, v] : params) names.push_back(name);
  for (const char* expected :
       {"model.embed_tokens.weight", "model.layers.1.self_attn.k_proj.weight",
        "model.layers.0.mlp.gate_proj.weight", "model.layers.0.post_attention_layernorm.weight",
        "model.norm.weight", "lm_head.weight"})
    EXPECT_NE(std::find(names.begin(), names.end(), expected), names.end()) << expected;
  EXPECT_EQ(nn::Gpt(small("llama-tiny")).params().size(), 1 + 2 * 9 + 2u);
}

}  // namespace
}  // namespace qkv::test
