// The Mixture-of-Experts feed-forward layer (nn/moe.h) against a PyTorch reference written from
// Mixtral's sparse MoE block and Switch Transformer's router (tests/python/moe_reference.py,
// float64), on random inputs and weights, in training mode:
// - for k = 1 and 2, E = 4 and 8, gated (SwiGLU) and plain experts, with and without biases,
//   Mixtral's and NLLB-MoE's parameter names, dropless, with a capacity small enough to drop
//   assignments and with one large enough to drop none: the output, the auxiliary and z losses and
//   the gradients of the input, the router and every expert parameter of sum(y * dy) + a * aux + b
//   * z, each within 1e-5 of the reference (max |got - want| over max |want|, per tensor); the
//   choices per expert, the capacity and the dropped assignments exactly; the router probabilities
//   [N, E] (1e-5), which the layer does not expose, through a case with k = E whose experts output
//   unit vectors;
// - the auxiliary loss is 1 (within 1e-6) when routing is uniform and E when every token's
//   probability sits on one expert with k = 1 (E / k with k choices per token);
// - evaluation is dropless whatever the capacity, and the packed inference path gives the
//   training-mode dropless output (1e-6);
// - impossible options are named errors.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "nn/moe.h"
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

enum class Drops { dropless, none, some };  // what a case's capacity does

struct MoeCase {
  std::string name;
  int64_t experts, top_k;
  double capacity_factor;
  std::string act;
  bool gated, bias;
  Drops drops;
  nn::MoeNames names = nn::MoeNames::mixtral;
};

const int64_t kBatch = 3, kLength = 8, kModel = 12, kHidden = 20;
const double kAuxWeight = 0.7, kZWeight = 0.3;  // large enough to weigh in every gradient

// A layer with random weights: decisive routing (logits of a few units) and nonzero biases.
nn::MoeFeedForward random_layer(const MoeCase& c, Rng& rng) {
  nn::MoeOptions options{c.experts, c.top_k, 1, c.capacity_factor};
  nn::MoeFeedForward layer(options, c.names, kModel, kHidden, ops::activation_from_name(c.act),
                           c.gated, c.bias);
  layer.init(rng);
  layer.router.weight.mutable_value().copy_from(randn({c.experts, kModel}, rng, 0.5f));
  nn::ParamList params;
  layer.params("model.layers.0", params);
  for (auto& [name, v] : params)
    if (v.shape().size() == 1) Var(v).mutable_value().copy_from(randn(v.shape(), rng, 0.1f));
  return layer;
}

// With k = E every token goes to every expert with its router probability as the gate (the
// renormalisation over all E is the identity): experts that output one-hot rows (w2 = 0, the bias
// of expert e the e-th unit vector) make the output's first E columns the probabilities [N, E].
void show_probabilities(nn::MoeFeedForward& layer) {
  for (size_t e = 0; e < layer.experts.size(); ++e) {
    nn::Linear& w2 = layer.experts[e].w2;
    w2.weight.mutable_value().copy_from(Tensor::zeros(w2.weight.shape()));
    std::vector<float> unit(size_t(kModel), 0.f);
    unit[e] = 1.f;
    w2.bias.mutable_value().copy_from(Tensor::from_vector(unit, {kModel}));
  }
}

// y [B, L, d] -> its first `experts` columns [B * L, experts].
Tensor first_columns(const Tensor& y, int64_t experts) {
  std::vector<float> all = y.to_vector(), out;
  for (size_t row = 0; row < all.size(); row += size_t(kModel))
    out.insert(out.end(), all.begin() + long(row), all.begin() + long(row) + experts);
  return Tensor::from_vector(out, {y.numel() / kModel, experts});
}

// The layer's forward pass while training, recording into `record`.
Var train_forward(const nn::MoeFeedForward& layer, const Var& x, nn::MoeRecord& record) {
  nn::Context ctx{.training = true};
  ctx.moe = &record;
  return layer(x, ctx);
}

TEST(Moe, MatchesMixtralAndSwitchReference) {
  const std::vector<MoeCase> cases = {
      {"k1_e4_gated", 4, 1, 0.0, "silu", true, true, Drops::dropless},
      {"k2_e8_gelu", 8, 2, 0.0, "gelu", false, true, Drops::dropless},
      {"k1_e4_relu_drops", 4, 1, 0.5, "relu", false, true, Drops::some},
      {"k2_e8_gated_drops", 8, 2, 0.6, "silu", true, true, Drops::some},
      {"k2_e4_gelu_drops_no_bias", 4, 2, 0.75, "gelu", false, false, Drops::some},
      {"k1_e8_gated_roomy", 8, 1, 3.0, "silu", true, false, Drops::none},
      {"k2_e4_silu_roomy", 4, 2, 1.5, "silu", false, true, Drops::none},
      {"k2_e4_nllb_drops", 4, 2, 0.75, "relu", false, true, Drops::some, nn::MoeNames::nllb},
      {"k4_e4_probabilities", 4, 4, 0.0, "gelu", false, true, Drops::dropless},
  };
  const int64_t tokens = kBatch * kLength;
  Rng rng(11);
  std::string dir = temp_path("moe");
  std::filesystem::create_directories(dir);
  NamedTensors inputs;
  nlohmann::json config;
  std::map<std::string, Tensor> got;
  std::map<std::string, nn::MoeLayerRecord> records;
  std::map<std::string, int64_t> capacities;
  for (const MoeCase& c : cases) {
    nn::MoeFeedForward layer = random_layer(c, rng);
    if (c.top_k == c.experts) show_probabilities(layer);
    nn::ParamList params;
    layer.params("model.layers.0", params);
    const size_t per_expert = (c.gated ? 3 : 2) * (c.bias ? 2 : 1);
    EXPECT_EQ(params.size(), 1 + size_t(c.experts) * per_expert) << c.name;
    Tensor x = randn({kBatch, kLength, kModel}, rng), dy = randn(x.shape(), rng);
    Var xv(x, true);
    nn::MoeRecord record;
    Tape tape;
    Var y, loss;
    {
      Recording rec(tape);
      y = train_forward(layer, xv, record);
      ASSERT_EQ(record.layers.size(), 1u) << c.name;
      const nn::MoeLayerRecord& r = record.layers[0];
      loss = add(add(sum(mul(y, Var(dy))), scale(r.aux_loss, float(kAuxWeight))),
                 scale(r.z_loss, float(kZWeight)));
    }
    tape.backward(loss);
    records[c.name] = record.layers[0];
    capacities[c.name] = layer.options.capacity(tokens);
    got[c.name + ".y"] = y.value();
    got[c.name + ".aux"] = record.layers[0].aux_loss.value();
    got[c.name + ".z"] = record.layers[0].z_loss.value();
    got[c.name + ".grad.x"] = xv.grad();
    for (const auto& [name, v] : params) {
      got[c.name + ".grad." + name] = v.grad();  // zeros for an expert that got no rows
      inputs.emplace_back(c.name + "." + name, v.value());
    }
    inputs.emplace_back(c.name + ".x", x);
    inputs.emplace_back(c.name + ".dy", dy);
    config[c.name] = {
        {"experts", c.experts}, {"top_k", c.top_k}, {"capacity_factor", c.capacity_factor},
        {"act", c.act},         {"gated", c.gated}, {"aux_weight", kAuxWeight},
        {"z_weight", kZWeight}};
  }
  save_safetensors(dir + "/inputs.safetensors", inputs);
  std::ofstream(dir + "/cases.json") << config.dump();
  run_python_script("moe_reference.py", dir);
  NamedTensors ref = load_safetensors(dir + "/reference.safetensors");

  for (const auto& [name, t] : got) expect_close(t, named(ref, name), 1e-5, name);
  for (const MoeCase& c : cases) {
    const nn::MoeLayerRecord& r = records[c.name];
    std::vector<float> choices = named(ref, c.name + ".expert_choices").to_vector();
    EXPECT_EQ(r.expert_choices, std::vector<int64_t>(choices.begin(), choices.end())) << c.name;
    EXPECT_EQ(r.assignments, tokens * c.top_k) << c.name;
    EXPECT_EQ(r.dropped, int64_t(named(ref, c.name + ".dropped").item())) << c.name;
    EXPECT_EQ(capacities[c.name], int64_t(named(ref, c.name + ".capacity").item())) << c.name;
    if (c.top_k == c.experts)
      expect_close(first_columns(got[c.name + ".y"], c.experts), named(ref, c.name + ".probs"),
                   1e-5, c.name + " router probabilities");
    if (c.drops == Drops::some) {
      EXPECT_GT(r.dropped, 0) << c.name << ": the capacity dropped nothing";
    } else {
      EXPECT_EQ(r.dropped, 0) << c.name;
    }
  }
}

TEST(Moe, EvaluationAndPackedInferenceAreDropless) {
  for (const MoeCase& c : {MoeCase{"k1", 4, 1, 0.5, "relu", false, true, Drops::some},
                           MoeCase{"k2_gated", 8, 2, 0.6, "silu", true, true, Drops::some}}) {
    Rng rng(5);
    nn::MoeFeedForward layer = random_layer(c, rng);
    Var x(randn({kBatch, kLength, kModel}, rng));
    nn::MoeRecord record;
    Tensor capped = train_forward(layer, x, record).value();
    ASSERT_GT(record.layers.at(0).dropped, 0) << c.name;
    Tensor evaluated = layer(x, nn::Context{}).value();
    Tensor packed = layer(x, layer.pack()).value();
    layer.options.capacity_factor = 0.0;
    Tensor dropless = train_forward(layer, x, record).value();
    EXPECT_GT(relative_error(capped, dropless), 1e-3) << c.name << ": dropping changed nothing";
    expect_close(evaluated, dropless, 1e-6, c.name + " evaluation");
    expect_close(packed, dropless, 1e-6, c.name + " packed inference");
  }
}

// A router and tokens that make routing uniform: the router scales one-hot tokens (d = E), token
// t leans on expert t mod E (and, for k = 2, half as much on the next one), every expert leads
// equally often, and the probabilities are the same up to a rotation of the experts. So f and P
// are uniform and aux = E * sum_e (1/E)(1/E) = 1.
TEST(Moe, AuxLossIsOneWhenRoutingIsUniform) {
  for (int64_t experts : {4, 8})
    for (int64_t k : {1, 2}) {
      nn::MoeFeedForward layer({experts, k, 1, 0.0}, nn::MoeNames::mixtral, experts, 6,
                               ops::Activation::silu, true, false);
      Rng rng(3);
      layer.init(rng);
      std::vector<float> router(size_t(experts * experts), 0.f);
      for (int64_t e = 0; e < experts; ++e) router[size_t(e * experts + e)] = 4.f;
      layer.router.weight.mutable_value().copy_from(
          Tensor::from_vector(router, {experts, experts}));
      const int64_t tokens = 3 * experts;
      std::vector<float> x;
      for (int64_t t = 0; t < tokens; ++t) {
        std::vector<float> row(size_t(experts), 0.f);  // [E]
        row[size_t(t % experts)] = 1.f;
        if (k == 2) row[size_t((t + 1) % experts)] = 0.5f;
        x.insert(x.end(), row.begin(), row.end());
      }
      nn::MoeRecord record;
      train_forward(layer, Var(Tensor::from_vector(x, {3, experts, experts})), record);
      const nn::MoeLayerRecord& r = record.layers.at(0);
      EXPECT_EQ(r.expert_choices, std::vector<int64_t>(size_t(experts), tokens * k / experts));
      EXPECT_NEAR(r.aux_loss.value().item(), 1.0, 1e-6) << "E " << experts << ", k " << k;
    }
  // A zero router: every logit equal, so with k = E every expert takes every token.
  nn::MoeFeedForward layer({4, 4, 1, 0.0}, nn::MoeNames::mixtral, 8, 6, ops::Activation::gelu,
                           false, true);
  Rng rng(4);
  layer.init(rng);
  layer.router.weight.mutable_value().copy_from(Tensor::zeros({4, 8}));
  nn::MoeRecord record;
  train_forward(layer, Var(randn({2, 5, 8}, rng)), record);
  EXPECT_NEAR(record.layers.at(0).aux_loss.value().item(), 1.0, 1e-6) << "zero router, k = E";
}

// Every token's probability on expert 0 (a router row of tens against positive tokens): P_0 = 1,
// f_0 = 1 / k (every token's first choice), so aux = E / k: E for Switch's top-1.
TEST(Moe, AuxLossIsEOverKWhenOneExpertTakesAllTheProbability) {
  for (int64_t experts : {4, 8})
    for (int64_t k : {1, 2}) {
      const int64_t d = 8;
      nn::MoeFeedForward layer({experts, k, 1, 0.0}, nn::MoeNames::mixtral, d, 6,
                               ops::Activation::gelu, false, false);
      Rng rng(6);
      layer.init(rng);
      std::vector<float> router(size_t(experts * d), 0.f);
      std::fill(router.begin(), router.begin() + d, 10.f);
      layer.router.weight.mutable_value().copy_from(Tensor::from_vector(router, {experts, d}));
      std::vector<float> x = randn({2, 7, d}, rng).to_vector();
      for (float& v : x) v = std::abs(v) + 0.5f;  // logit of expert 0 >= 40, the others 0
      nn::MoeRecord record;
      train_forward(layer, Var(Tensor::from_vector(x, {2, 7, d})), record);
      const nn::MoeLayerRecord& r = record.layers.at(0);
      EXPECT_EQ(r.expert_choices.at(0), 14) << "E " << experts << ", k " << k;
      EXPECT_NEAR(r.aux_loss.value().item(), double(experts) / double(k), 1e-6 * double(experts))
          << "E " << experts << ", k " << k;
    }
}

// The message names the option (and where it came from).
void expect_named_error(const nn::MoeOptions& options, const std::string& option) {
  try {
    options.check("config.yaml");
    ADD_FAILURE() << option << ": accepted";
  } catch (const std::invalid_argument& e) {
    std::string what = e.what();
    EXPECT_NE(what.find(option), std::string::npos) << what;
    EXPECT_NE(what.find("config.yaml"), std::string::npos) << what;
  }
}

TEST(Moe, ImpossibleOptionsAreNamedErrors) {
  EXPECT_NO_THROW(nn::MoeOptions({8, 2, 1, 1.25}).check("config.yaml"));
  EXPECT_NO_THROW(nn::MoeOptions({4, 4, 2, 0.0}).check("config.yaml"));
  EXPECT_NO_THROW(nn::MoeOptions{}.check("config.yaml"));  // dense
  expect_named_error({4, 5, 1, 0.0}, "moe-top-k");
  expect_named_error({4, 0, 1, 0.0}, "moe-top-k");
  expect_named_error({-1, 2, 1, 0.0}, "moe-experts");
  expect_named_error({8, 2, 1, -0.5}, "moe-capacity-factor");
  expect_named_error({8, 2, 0, 0.0}, "moe-every");
  try {  // a model's MoE layer with no experts
    nn::MoeFeedForward({0, 2, 1, 0.0}, nn::MoeNames::mixtral, 8, 16, ops::Activation::silu, true,
                       false);
    ADD_FAILURE() << "an MoE layer of 0 experts was built";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("moe-experts"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace qkv::test
