// LoRA (nn/lora.h) against a PyTorch reference written from peft's definition of a LoRA Linear
// (tests/python/lora_reference.py, float64), on random inputs:
// - a Linear with an attached update (bias or not, alpha != r, rsLoRA, dropout with the mask
//   qkv drew): output, gradients of x, A and B, the merged weight and its output, each within
//   1e-5 of the reference (max |got - want| over max |want|, per tensor); the frozen base
//   weight gets no gradient;
// - ten clipped Adam updates of an adapter on a small Llama with a frozen base: the loss before
//   each within 1e-5 of the reference's (relative), the adapter's final A and B within 1e-5 per
//   tensor and their change over the ten updates within 3e-5, and the base weights bit for bit
//   as they were;
// - targets as peft matches them, and a new adapter's initialisation and rank limit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "nn/gpt.h"
#include "nn/lora.h"
#include "optim/optimizer.h"
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

struct LinearCase {
  std::string name;
  bool bias;
  int64_t rank;
  double alpha;
  bool rslora;
  float dropout;
};

// The inputs dropout kept (1) or zeroed (0), from the mask qkv::dropout draws with `rng`.
Tensor kept_inputs(const Shape& shape, float p, Rng rng) {
  std::vector<float> mask = dropout(Var(Tensor::full(shape, 1.f)), p, rng).value().to_vector();
  for (float& m : mask) m = m != 0.f ? 1.f : 0.f;
  return Tensor::from_vector(mask, shape);
}

TEST(Lora, LinearMatchesPeftsDefinition) {
  const std::vector<LinearCase> cases = {{"bias", true, 4, 4, false, 0.f},
                                         {"no_bias_alpha", false, 3, 12, false, 0.f},
                                         {"rslora", true, 4, 8, true, 0.f},
                                         {"dropout", true, 2, 5, false, 0.3f}};
  const int64_t rows = 6, in = 10, out = 7;
  Rng rng(1);
  std::string dir = temp_path("lora_linear");
  std::filesystem::create_directories(dir);
  NamedTensors inputs;
  nlohmann::json config;
  std::map<std::string, Tensor> got;
  for (const LinearCase& c : cases) {
    nn::Linear layer(in, out, c.bias);
    layer.init(rng);
    if (c.bias) layer.bias.mutable_value().copy_from(randn({out}, rng));
    nn::ParamList base;
    layer.params("layer", base);
    nn::freeze(base);
    Tensor weight = layer.weight.value().clone();  // merging changes the layer's
    nn::LinearList linears = {{"layer", &layer}};
    nn::LoraOptions options{c.rank, c.alpha, c.dropout, {"layer"}, c.rslora};
    nn::LoraAdapter adapter = nn::new_lora_adapter(linears, options, rng);
    nn::LoraWeights& w = adapter.modules.at("layer");
    w.b.mutable_value().copy_from(randn(w.b.shape(), rng));  // a trained update, not zero
    nn::attach_lora(linears, adapter);

    Tensor x = randn({rows, in}, rng), dout = randn({rows, out}, rng);
    Rng dropout_rng(7);
    nn::Context ctx{.training = true, .rng = &dropout_rng};
    if (c.dropout > 0)
      inputs.emplace_back(c.name + ".keep", kept_inputs(x.shape(), c.dropout, dropout_rng));
    Var xv(x, true);
    Tape tape;
    Var y, loss;
    {
      Recording rec(tape);
      y = layer(xv, ctx);
      loss = sum(mul(y, Var(dout)));
    }
    tape.backward(loss);
    EXPECT_FALSE(layer.weight.has_grad()) << c.name << ": the frozen weight got a gradient";
    if (c.bias) {
      EXPECT_FALSE(layer.bias.has_grad()) << c.name << ": the frozen bias got a gradient";
    }
    got[c.name + ".out"] = y.value();
    got[c.name + ".d_x"] = xv.grad();
    got[c.name + ".d_lora_A"] = w.a.grad();
    got[c.name + ".d_lora_B"] = w.b.grad();
    Tensor unmerged_eval = layer(Var(x)).value();  // no dropout outside training
    nn::merge_lora(linears);
    EXPECT_FALSE(layer.lora) << c.name << ": merging leaves the update attached";
    got[c.name + ".merged_weight"] = layer.weight.value();
    got[c.name + ".merged_out"] = layer(Var(x)).value();
    expect_close(unmerged_eval, got[c.name + ".merged_out"], 1e-5, c.name + " unmerged vs merged");

    for (auto [key, t] : {std::pair{".x", x},
                          {".weight", weight},
                          {".lora_A", w.a.value()},
                          {".lora_B", w.b.value()},
                          {".dout", dout}})
      inputs.emplace_back(c.name + key, t);
    if (c.bias) inputs.emplace_back(c.name + ".bias", layer.bias.value());
    config[c.name] = {
        {"lora_alpha", c.alpha}, {"use_rslora", c.rslora}, {"lora_dropout", c.dropout}};
  }
  save_safetensors(dir + "/inputs.safetensors", inputs);
  std::ofstream(dir + "/cases.json") << config.dump();
  run_python_script("lora_reference.py", "linear " + dir);
  NamedTensors ref = load_safetensors(dir + "/reference.safetensors");
  for (const auto& [name, t] : got) expect_close(t, named(ref, name), 1e-5, name);
}

nn::GptConfig small_llama() {
  nn::GptConfig c = nn::GptConfig::preset("llama-tiny");
  c.vocab_size = 37, c.context_length = 16, c.d_model = 32, c.layers = 2, c.heads = 4;
  c.kv_heads = 2, c.d_ff = 48;
  return c;
}

// Random weights, the norms' around 1 (a freshly initialised model's norms are all ones).
nn::Gpt random_model(const nn::GptConfig& c, uint64_t seed) {
  nn::Gpt model(c);
  Rng rng(seed);
  model.init(rng);
  for (auto& [name, v] : model.params())
    if (name.ends_with("norm.weight"))
      Var(v).mutable_value().copy_from(
          ops::add(randn(v.shape(), rng, 0.1f), Tensor::full(v.shape(), 1.f)));
  return model;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// The update TrainingLoop::update makes: gradients summed over the targets, normalised by their
// count and clipped (optim::clipped_update), then Adam.
TEST(Lora, TenAdamStepsWithAFrozenBaseMatchTheReference) {
  const nn::GptConfig c = small_llama();
  nn::Gpt model = random_model(c, 3);
  nn::ParamList base = model.params();
  nn::freeze(base);
  NamedTensors base_before;
  for (const auto& [name, t] : nn::param_tensors(base)) base_before.emplace_back(name, t.clone());
  Rng rng(4);
  nn::LinearList linears = model.linears();
  nn::LoraAdapter adapter =
      nn::new_lora_adapter(linears, {4, 8, 0.f, {"q_proj,v_proj"}, false}, rng);
  nn::attach_lora(linears, adapter);
  nn::ParamList params = adapter.params();
  NamedTensors initial;
  for (const auto& [name, t] : nn::param_tensors(params)) initial.emplace_back(name, t.clone());

  const int64_t batch = 3, len = 11;
  Tensor inputs = rand_ids({batch, len}, int32_t(c.vocab_size), rng);
  Tensor targets = rand_ids({batch, len}, int32_t(c.vocab_size), rng);
  for (int64_t i : {4, 17, 32}) targets.data<int32_t>()[i] = -1;  // not scored
  const int64_t count = batch * len - 3;
  const float lr = 1e-2f, clip = 0.11f;
  std::string dir = temp_path("lora_train");
  std::filesystem::create_directories(dir);
  save_safetensors(dir + "/weights.safetensors", base_before);
  save_safetensors(dir + "/adapter.safetensors", initial);
  save_safetensors(dir + "/batch.safetensors", {{"inputs", inputs}, {"targets", targets}});
  nlohmann::json config = {{"layers", c.layers},
                           {"heads", c.heads},
                           {"kv_heads", c.kv_heads},
                           {"positions", c.positions},
                           {"rope_theta", c.rope_theta},
                           {"norm", c.norm},
                           {"norm_eps", c.norm_eps},
                           {"mlp", c.mlp},
                           {"tie_embeddings", c.tie_embeddings},
                           {"lora_alpha", 8},
                           {"use_rslora", false},
                           {"lr", lr},
                           {"beta1", 0.9},
                           {"beta2", 0.999},
                           {"eps", 1e-8},
                           {"clip_norm", clip},
                           {"steps", 10}};
  std::ofstream(dir + "/config.json") << config.dump();
  run_python_script("lora_reference.py", "train " + dir);
  NamedTensors ref = load_safetensors(dir + "/reference.safetensors");

  optim::Adam adam(params, {0.9f, 0.999f, 1e-8f, 0.f});
  std::vector<float> want = named(ref, "losses").to_vector();
  ASSERT_EQ(want.size(), 10u);
  int clipped = 0;
  for (size_t step = 0; step < want.size(); ++step) {
    Tape tape;
    Var loss;
    {
      Recording rec(tape);
      Var logits = model.forward(inputs, {.training = true});
      loss = cross_entropy_sum(reshape(logits, {-1, c.vocab_size}), targets.reshape({-1}), -1, 0.f);
    }
    double loss_sum = loss.value().item();
    EXPECT_NEAR(loss_sum / double(count), want[step], 1e-5 * want[step]) << "step " << step;
    tape.backward(loss);
    optim::UpdateResult r = optim::clipped_update(adam, params, loss_sum, count, lr, clip);
    ASSERT_TRUE(r.applied) << "step " << step;
    clipped += r.grad_norm > clip;
  }
  EXPECT_GT(clipped, 0) << "no update was clipped: the clipping went untested";
  EXPECT_LT(clipped, 10) << "every update was clipped: the unclipped one went untested";
  // The tensors, and what the ten updates changed (A starts far from zero): fp32 against fp64
  // through ten Adam steps, whose normalisation amplifies rounding in small gradients, differ by
  // up to about 1.1e-5 of the change (A's first update follows a gradient of B ~ lr).
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& [key, v] = params[i];
    expect_close(v.value(), named(ref, key), 1e-5, key);
    Tensor got = v.value().clone(), want = named(ref, key).clone();
    ops::axpy(-1.f, initial[i].second, got);
    ops::axpy(-1.f, initial[i].second, want);
    expect_close(got, want, 3e-5, key + " update");
  }
  NamedTensors after = nn::param_tensors(base);
  for (size_t i = 0; i < after.size(); ++i)
    EXPECT_TRUE(same_bits(after[i].second, base_before[i].second)) << after[i].first << " changed";
}

std::vector<std::string> layer_modules(const std::vector<std::string>& endings) {
  std::vector<std::string> out;
  for (int layer : {0, 1})
    for (const auto& e : endings) out.push_back("model.layers." + std::to_string(layer) + "." + e);
  return out;
}

TEST(Lora, TargetsMatchNamesAndNameEndingsAsPeftDoes) {
  nn::Gpt model(small_llama());
  nn::LinearList linears = model.linears();
  auto qv = layer_modules({"self_attn.q_proj", "self_attn.v_proj"});
  EXPECT_EQ(nn::match_lora_targets(linears, {"q_proj,v_proj"}), qv);
  EXPECT_EQ(nn::match_lora_targets(linears, {"v_proj", "q_proj"}), qv);  // the model's order
  EXPECT_EQ(nn::match_lora_targets(linears, {"q_proj,,v_proj,"}), qv);
  EXPECT_EQ(nn::match_lora_targets(linears, {"mlp.down_proj"}), layer_modules({"mlp.down_proj"}));
  EXPECT_EQ(nn::match_lora_targets(linears, {"model.layers.1.self_attn.o_proj"}),
            std::vector<std::string>{"model.layers.1.self_attn.o_proj"});
  EXPECT_EQ(nn::match_lora_targets(linears, {"all-linear"}),
            layer_modules({"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                           "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}));
  for (std::string bad : {"proj", "query", "layers.1.q_proj", "lm_head"}) {
    try {
      nn::match_lora_targets(linears, {"q_proj," + bad});
      ADD_FAILURE() << "'" << bad << "' matched";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("'" + bad + "'"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("gate_proj"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(nn::match_lora_targets(linears, {","}), std::invalid_argument);
}

TEST(Lora, NewAdapterStartsAtTheBaseWithPeftsInitialisation) {
  nn::Linear layer(200, 30, true);
  nn::LinearList linears = {{"block.fc", &layer}};
  Rng rng(2);
  nn::LoraAdapter adapter = nn::new_lora_adapter(linears, {8, 12, 0.1f, {"fc"}, false}, rng);
  ASSERT_EQ(adapter.modules.size(), 1u);
  const nn::LoraWeights& w = adapter.modules.at("block.fc");
  ASSERT_EQ(w.a.shape(), (Shape{8, 200}));
  ASSERT_EQ(w.b.shape(), (Shape{30, 8}));
  EXPECT_FLOAT_EQ(w.scaling, 12.f / 8.f);
  EXPECT_FLOAT_EQ(w.dropout, 0.1f);
  for (float b : w.b.value().to_vector()) ASSERT_EQ(b, 0.f);
  // kaiming_uniform(a = sqrt(5)) on [r, in]: U(-1/sqrt(in), 1/sqrt(in)), variance bound^2 / 3.
  const double bound = 1.0 / std::sqrt(200.0);
  std::vector<float> a = w.a.value().to_vector();
  double lo = 0, hi = 0, mean = 0, square = 0;
  for (float v : a)
    lo = std::min(lo, double(v)), hi = std::max(hi, double(v)), mean += v, square += double(v) * v;
  mean /= double(a.size()), square /= double(a.size());
  EXPECT_LE(hi, bound);
  EXPECT_GE(lo, -bound);
  EXPECT_GT(hi, 0.99 * bound);
  EXPECT_LT(lo, -0.99 * bound);
  EXPECT_NEAR(mean, 0.0, 0.05 * bound);
  EXPECT_NEAR(square, bound * bound / 3, 0.05 * bound * bound / 3);
  EXPECT_FLOAT_EQ(
      nn::new_lora_adapter(linears, {4, 0, 0.f, {"fc"}, true}, rng).modules.at("block.fc").scaling,
      4.f / 2.f);  // alpha defaults to r; rsLoRA divides by sqrt(r)

  EXPECT_NO_THROW(nn::new_lora_adapter(linears, {30, 0, 0.f, {"fc"}, false}, rng));
  try {
    nn::new_lora_adapter(linears, {31, 0, 0.f, {"fc"}, false}, rng);
    ADD_FAILURE() << "rank 31 accepted for a [30, 200] weight";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("block.fc"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("at most 30"), std::string::npos) << e.what();
  }
}

TEST(Lora, WeightsChecksumTellsOneBaseFromAnother) {
  nn::Gpt model = random_model(small_llama(), 3);
  std::string sum = nn::weights_checksum(model.params());
  ASSERT_EQ(sum.size(), 8u + 16u);
  EXPECT_TRUE(sum.starts_with("fnv1a64:")) << sum;
  EXPECT_EQ(nn::weights_checksum(random_model(small_llama(), 3).params()), sum);
  EXPECT_NE(nn::weights_checksum(random_model(small_llama(), 4).params()), sum);
  Rng rng(5);
  nn::LinearList linears = model.linears();
  nn::attach_lora(linears, nn::new_lora_adapter(linears, {2, 0, 0.f, {"all-linear"}, false}, rng));
  EXPECT_EQ(nn::weights_checksum(model.params()), sum) << "an attached adapter is not the base";
  nn::ParamList params = model.params();
  Tensor w = params.back().second.value();
  w.data<float>()[0] = std::nextafter(w.data<float>()[0], 1e9f);  // one ulp
  EXPECT_NE(nn::weights_checksum(params), sum);
}

}  // namespace
}  // namespace qkv::test
