// The ViT model: patch order, Hugging Face parameter names, config files, and parity with a
// PyTorch ViT built from torch.nn layers (tests/python/vit_reference.py) on the same weights:
// logits (relative 1e-4), each parameter's gradient in the first step (relative to its own norm,
// 1e-4) and the losses of 10 AdamW steps (relative 1e-4 each).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "model_dir/vit_dir.h"
#include "nn/vit.h"
#include "optim/optimizer.h"
#include "support/gradient_compare.h"
#include "support/python_script.h"
#include "support/torch_ref.h"

namespace qkv::test {
namespace {

nn::ViTConfig small_config() {
  nn::ViTConfig c;
  c.channels = 3, c.image_size = 12, c.patch_size = 4;
  c.d_model = 32, c.heads = 4, c.d_ff = 64, c.layers = 2;
  c.classes = {"a", "b", "c", "d", "e"};
  c.dropout = 0.f, c.layer_norm_eps = 1e-6f;
  c.mean = c.stddev = {0.5f, 0.5f, 0.5f};
  return c;
}

TEST(ViT, PatchifyCutsRowMajorPatchesInChannelRowColumnOrder) {
  // images [1, 2, 4, 6] with value = 100 * c + 10 * y + x, patch 2 -> [1, 6, 8].
  std::vector<float> v;
  for (int c = 0; c < 2; ++c)
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 6; ++x) v.push_back(float(100 * c + 10 * y + x));
  Tensor p = nn::patchify(Tensor::from_vector(v, {1, 2, 4, 6}), 2);
  ASSERT_EQ(p.shape(), (Shape{1, 6, 8}));
  // Patch 4 is grid row 1, column 1: pixels y in {2, 3}, x in {2, 3}.
  std::vector<float> want{22, 23, 32, 33, 122, 123, 132, 133};
  std::vector<float> got = p.to_vector();
  EXPECT_EQ(std::vector<float>(got.begin() + 4 * 8, got.begin() + 5 * 8), want);
  EXPECT_THROW(nn::patchify(Tensor::zeros({1, 2, 5, 6}), 2), std::invalid_argument);
}

TEST(ViT, ParametersHaveHuggingFaceNamesAndShapes) {
  nn::ViTConfig c = small_config();
  c.layers = 1;
  nn::ViT model(c);
  std::vector<std::pair<std::string, Shape>> want{
      {"vit.embeddings.cls_token", {1, 1, 32}},
      {"vit.embeddings.position_embeddings", {1, 10, 32}},
      {"vit.embeddings.patch_embeddings.projection.weight", {32, 3, 4, 4}},
      {"vit.embeddings.patch_embeddings.projection.bias", {32}},
      {"vit.encoder.layer.0.attention.attention.query.weight", {32, 32}},
      {"vit.encoder.layer.0.attention.attention.query.bias", {32}},
      {"vit.encoder.layer.0.attention.attention.key.weight", {32, 32}},
      {"vit.encoder.layer.0.attention.attention.key.bias", {32}},
      {"vit.encoder.layer.0.attention.attention.value.weight", {32, 32}},
      {"vit.encoder.layer.0.attention.attention.value.bias", {32}},
      {"vit.encoder.layer.0.attention.output.dense.weight", {32, 32}},
      {"vit.encoder.layer.0.attention.output.dense.bias", {32}},
      {"vit.encoder.layer.0.layernorm_before.weight", {32}},
      {"vit.encoder.layer.0.layernorm_before.bias", {32}},
      {"vit.encoder.layer.0.intermediate.dense.weight", {64, 32}},
      {"vit.encoder.layer.0.intermediate.dense.bias", {64}},
      {"vit.encoder.layer.0.output.dense.weight", {32, 64}},
      {"vit.encoder.layer.0.output.dense.bias", {32}},
      {"vit.encoder.layer.0.layernorm_after.weight", {32}},
      {"vit.encoder.layer.0.layernorm_after.bias", {32}},
      {"vit.layernorm.weight", {32}},
      {"vit.layernorm.bias", {32}},
      {"classifier.weight", {5, 32}},
      {"classifier.bias", {5}},
  };
  std::vector<std::pair<std::string, Shape>> got;
  for (const auto& [name, v] : model.params()) got.emplace_back(name, v.shape());
  EXPECT_EQ(got, want);
}

TEST(ViT, PresetsHaveTheirShapes) {
  nn::ViTConfig b16 = nn::ViTConfig::preset("vit-b16");
  b16.classes = std::vector<std::string>(1000, "x");
  EXPECT_EQ(b16.patches(), 196);
  nn::ViT model(b16);  // about 86.6 million parameters, as ViT-B/16 with a 1000-class head
  EXPECT_EQ(nn::count_params(model.params()), 86567656);
  EXPECT_THROW(nn::ViTConfig::preset("vit-huge"), std::invalid_argument);
}

TEST(ViT, ConfigFileRoundTripsAndRejectsBadValues) {
  nn::ViTConfig c = small_config();
  c.classes = {"T-shirt/top", "Ankle boot"};
  c.mean = {0.28604063f, 0.1f, 0.2f};
  std::string path = temp_path("vit_config.yaml");
  model_dir::write_config(path, c);
  nn::ViTConfig r = model_dir::read_vit_config(path);
  EXPECT_EQ(r.classes, c.classes);
  EXPECT_EQ(r.mean, c.mean);
  EXPECT_EQ(r.stddev, c.stddev);
  EXPECT_EQ(r.d_model, 32);
  EXPECT_EQ(r.layer_norm_eps, 1e-6f);
  std::ofstream(path, std::ios::app) << "patch-size: 5\n";
  try {
    model_dir::read_vit_config(path);
    ADD_FAILURE() << "no error for patch 5 on 12-pixel images";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("multiple of patch-size"), std::string::npos) << e.what();
  }
}

TEST(ViT, MatchesTorchLogitsAndTenAdamWSteps) {
  nn::ViTConfig c = small_config();
  Rng rng(3);
  nn::ViT model(c);
  model.init(rng);
  // Random LayerNorm parameters and biases so each mapping is exercised.
  for (auto& [name, v] : model.params())
    if (name.find("norm") != std::string::npos || name.ends_with("bias"))
      Var(v).mutable_value().copy_from(randn(v.shape(), rng, 0.2f));
  const int64_t batch = 4;
  Tensor images = randn({batch, 3, 12, 12}, rng);
  Tensor labels = rand_ids({batch}, 5, rng);

  std::string dir = temp_path("vit_parity");
  std::filesystem::create_directories(dir);
  save_safetensors(dir + "/weights.safetensors", nn::param_tensors(model.params()));
  save_safetensors(dir + "/batch.safetensors", {{"images", images}, {"labels", labels}});
  const float lr = 2e-3f, weight_decay = 0.05f, smoothing = 0.1f;
  nlohmann::json config = {{"channels", 3},
                           {"image_size", 12},
                           {"patch_size", 4},
                           {"d_model", 32},
                           {"heads", 4},
                           {"d_ff", 64},
                           {"layers", 2},
                           {"classes", 5},
                           {"layer_norm_eps", 1e-6},
                           {"lr", lr},
                           {"weight_decay", weight_decay},
                           {"label_smoothing", smoothing},
                           {"steps", 10}};
  std::ofstream(dir + "/config.json") << config.dump();
  run_python_script("vit_reference.py", dir);
  auto ref = load_safetensors(dir + "/reference.safetensors");

  auto named = [&](const std::string& name) {
    for (const auto& [n, t] : ref)
      if (n == name) return t;
    ADD_FAILURE() << "the reference wrote no '" << name << "'";
    return Tensor::zeros({1});
  };
  nn::Context ctx;
  expect_close(model.forward(images, ctx).value(), named("logits"), 1e-4, "ViT logits");

  nn::ParamList params = model.params();
  optim::Adam adam(params, {0.9f, 0.999f, 1e-8f, weight_decay});
  std::vector<float> want = named("losses").to_vector();
  for (int step = 0; step < 10; ++step) {
    optim::zero_grads(params);
    Tape tape;
    Var loss;
    {
      Recording rec(tape);
      Var sum = cross_entropy_sum(model.forward(images, ctx), labels, -1, smoothing);
      loss = scale(sum, 1.f / float(batch));
    }
    EXPECT_NEAR(loss.value().item(), want[size_t(step)], 1e-4 * std::fabs(want[size_t(step)]))
        << "loss before step " << step;
    tape.backward(loss);
    for (const auto& [name, v] : params) {
      if (step > 0) break;  // the first step's gradients, from the same weights
      // Each gradient relative to its own norm. The key biases' gradient is zero in exact
      // arithmetic (softmax ignores a constant added to a query's scores): rounding noise on
      // both sides, measured against the norm of their weights' gradient. Measured: at most
      // 8e-7 (the key biases 6e-7 of their weights'); 1e-4 leaves room for another BLAS.
      double floor = 1e-30;
      if (name.ends_with("attention.key.bias"))
        floor = tensor_norm(named("grad." + name.substr(0, name.size() - 4) + "weight"));
      EXPECT_TRUE(gradient_close(name, v.grad(), named("grad." + name), 1e-4, floor));
    }
    adam.step(lr, 1.f);
  }
}

}  // namespace
}  // namespace qkv::test
