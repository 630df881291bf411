// timm VisionTransformer folders -> qkv: the converted model gives the logits (relative 1e-4) of
// a float64 model built from torch's own layers with timm's weights
// (tests/python/timm_vit_reference.py; Debian 12 has no timm); class names, input normalisation
// and the number of heads come from config.json; variants qkv lacks are named errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "convert/timm_vit.h"
#include "io/safetensors.h"
#include "model_dir/vit_dir.h"
#include "nn/vit.h"
#include "support/data_files.h"
#include "support/python_script.h"
#include "support/torch_ref.h"

namespace qkv::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// A timm folder of random weights from the reference script.
void make_timm(const std::string& dir, const json& spec) {
  fs::create_directories(dir);
  std::ofstream(dir + "/make.json") << spec.dump();
  run_python_script("timm_vit_reference.py", "make " + dir + " " + dir + "/make.json");
  fs::remove(dir + "/make.json");
}

// vit_tiny's 3 heads (from the architecture's name) on a 24-wide model of 16 x 16 images.
json tiny_spec() {
  return {{"architecture", "vit_tiny_patch4_16.test"},
          {"embed_dim", 24},
          {"depth", 2},
          {"num_heads", 3},
          {"mlp_dim", 48},
          {"img_size", 16},
          {"patch_size", 4},
          {"in_chans", 3},
          {"num_classes", 4},
          {"label_names", {"cat", "dog", "bird", "fish"}},
          {"seed", 3}};
}

TEST(TimmViT, GivesTheReferenceLogits) {
  ScratchDir dir("convert_timm");
  json custom = tiny_spec();  // a name timm does not know: heads from model_args
  custom["architecture"] = "vit_custom_patch4";
  custom["embed_dim"] = 32, custom["num_heads"] = 4, custom["in_chans"] = 1;
  custom["model_args"] = {{"num_heads", 4}, {"embed_dim", 32}};
  custom["mean"] = {0.3}, custom["std"] = {0.7};
  custom.erase("label_names");
  for (const json& spec : {tiny_spec(), custom}) {
    std::string timm = dir.file(spec["architecture"].get<std::string>());
    make_timm(timm, spec);
    ASSERT_TRUE(convert::is_timm_folder(timm));
    auto notes = convert::vit_from_timm(timm, timm + "-qkv");
    auto model = model_dir::load_vit_dir(timm + "-qkv");
    const nn::ViTConfig& c = model->config();
    EXPECT_EQ(c.heads, spec["num_heads"].get<int64_t>());
    EXPECT_EQ(c.layer_norm_eps, 1e-6f);
    EXPECT_EQ(c.image_size, 16);
    if (spec.contains("label_names")) {
      EXPECT_EQ(c.classes, spec["label_names"].get<std::vector<std::string>>());
      EXPECT_EQ(c.mean, (std::vector<float>{0.485f, 0.456f, 0.406f}));
    } else {
      EXPECT_EQ(c.classes, (std::vector<std::string>{"0", "1", "2", "3"}));
      EXPECT_EQ(c.stddev, std::vector<float>{0.7f});
      EXPECT_NE(notes.at(0).find("no label_names"), std::string::npos);
    }
    Rng rng(8);
    Tensor pixels = randn({2, c.channels, 16, 16}, rng);
    save_safetensors(timm + "/io.safetensors", {{"pixel_values", pixels}});
    run_python_script("timm_vit_reference.py", "run " + timm + " " + timm + "/io.safetensors");
    Tensor want;
    for (auto& [name, t] : load_safetensors(timm + "/io.safetensors"))
      if (name == "logits") want = t;
    expect_close(model->forward(pixels, {}).value(), want, 1e-4, "logits");
  }
}

TEST(TimmViT, VariantsQkvLacksAreNamed) {
  ScratchDir dir("convert_timm_bad");
  std::string timm = dir.file("timm");
  make_timm(timm, tiny_spec());
  auto fails = [&](const std::function<void(json&, NamedTensors&)>& edit,
                   const std::vector<std::string>& parts) {
    std::string variant = dir.file("variant");
    fs::remove_all(variant);
    fs::copy(timm, variant);
    json cfg = json::parse(std::ifstream(timm + "/config.json"));
    NamedTensors w = load_safetensors(timm + "/model.safetensors");
    edit(cfg, w);
    std::ofstream(variant + "/config.json") << cfg.dump();
    save_safetensors(variant + "/model.safetensors", w);
    fs::remove_all(dir.file("out"));
    expect_error<std::runtime_error>([&] { convert::vit_from_timm(variant, dir.file("out")); },
                                     parts);
  };
  fails([](json& c, NamedTensors&) { c["global_pool"] = "avg"; }, {"global_pool \"avg\""});
  fails([](json& c, NamedTensors&) { c["architecture"] = "resnet50"; },
        {"timm architecture \"resnet50\" is not supported"});
  fails([](json& c, NamedTensors&) { c["architecture"] = "vit_mystery_patch4"; },
        {"number of heads", "model_args"});
  fails([](json& c, NamedTensors&) { c["label_names"] = {"cat"}; }, {"1 label_names", "4"});
  fails([](json&, NamedTensors& w) { w.emplace_back("fc_norm.weight", Tensor::zeros({24})); },
        {"does not understand", "fc_norm.weight"});
  fails([](json&,
           NamedTensors& w) { std::erase_if(w, [](auto& p) { return p.first == "cls_token"; }); },
        {"missing tensor 'cls_token'"});
  fails(
      [](json&, NamedTensors& w) {
        for (auto& [name, t] : w)
          if (name == "blocks.1.attn.qkv.weight") t = Tensor::zeros({70, 24});
      },
      {"blocks.1.attn.qkv.weight", "[70, 24]", "[72, 24]"});
  fails(
      [](json&, NamedTensors& w) {
        for (auto& [name, t] : w)
          if (name == "pos_embed") t = Tensor::zeros({1, 16, 24});  // no_embed_class
      },
      {"pos_embed holds 16 positions"});
  EXPECT_FALSE(convert::is_timm_folder(dir.file("nowhere")));
}

}  // namespace
}  // namespace qkv::test
