// qkv convert for torch.nn.Transformer checkpoints (post-norm and pre-norm, against the logits of
// the torch model itself, relative 1e-4) and for Hugging Face ViTForImageClassification folders
// (a qkv ViT written as HF and read back is bit-identical and gives the same logits; config.json
// and preprocessor_config.json carry its options; bad folders give named errors).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "convert/hf_vit.h"
#include "convert/torch_transformer.h"
#include "data/batcher.h"
#include "data/corpus.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "model_dir/seq2seq_dir.h"
#include "model_dir/vit_dir.h"
#include "nn/vit.h"
#include "support/data_files.h"
#include "support/python_script.h"
#include "support/torch_ref.h"

namespace qkv::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct TorchCase {
  const char* activation;
  bool norm_first;
};

class TorchTransformer : public ::testing::TestWithParam<TorchCase> {};

TEST_P(TorchTransformer, ConvertsToTheSameLogits) {
  ScratchDir dir("convert_torch");
  data::ParallelCorpus dev =
      data::read_tsv(std::string(QKV_SOURCE_DIR) + "/data/bible.es-en.dev.tsv.xz");
  std::vector<std::string_view> text(dev.src.begin(), dev.src.begin() + 200);
  data::TokenizerOptions o;
  o.vocab_size = 120, o.model_type = "bpe";
  data::Tokenizer tok = data::Tokenizer::train(text, o);
  tok.save(dir.file("spm"));

  nn::Seq2SeqConfig c;
  c.vocab_size = tok.vocab_size(), c.d_model = 16, c.heads = 2, c.d_ff = 24;
  c.encoder_layers = c.decoder_layers = 2, c.activation = GetParam().activation;
  c.pre_norm = GetParam().norm_first, c.tie_embeddings = false, c.max_positions = 32;
  model_dir::write_config(dir.file("config.yaml"), c);
  std::ofstream(dir.file("spec.json")) << json{
      {"vocab", c.vocab_size},
      {"d_model", c.d_model},
      {"heads", c.heads},
      {"d_ff", c.d_ff},
      {"layers", 2},
      {"activation", c.activation},
      {"norm_first", c.pre_norm},
      {"seed", 4}}.dump();
  Rng rng(2);
  data::Batch src = data::make_source_batch({{5, 9, 30, 7}, {11, 12}, {40, 41, 42, 43, 44, 45}});
  Tensor tgt_in = rand_ids({3, 5}, int32_t(c.vocab_size), rng);
  save_safetensors(dir.file("io.safetensors"),
                   {{"src", (src.src)}, {"src_len", (src.src_lengths)}, {"tgt_in", (tgt_in)}});
  run_python_script("torch_transformer_reference.py", dir.file(""));
  auto notes = convert::seq2seq_from_torch(dir.file("weights.safetensors"), dir.file("config.yaml"),
                                           dir.file("spm/spm.model"), dir.file("out"));
  EXPECT_EQ(notes.size(), c.pre_norm ? 0u : 1u);  // post-norm: nn.Transformer's final norms
  model_dir::TranslationModel m = model_dir::load_translation_dir(dir.file("out"));
  EXPECT_TRUE(m.model->config().stack_norms());
  Tensor want;
  for (auto& [name, t] : load_safetensors(dir.file("io.safetensors")))
    if (name == "logits") want = t;
  Var got = m.model->forward(src.src, src.src_lengths, tgt_in, nn::Context{});
  expect_close(got.value(), want, 1e-4, "logits");

  // The same module saved by torch.save (float64 there, rounded to f32 as numpy does above),
  // alone or as the "model" of a training checkpoint.
  std::string weights = read_file(dir.file("out/model.safetensors"));
  convert::seq2seq_from_torch(dir.file("weights.pt"), dir.file("config.yaml"),
                              dir.file("spm/spm.model"), dir.file("out-pt"));
  EXPECT_TRUE(read_file(dir.file("out-pt/model.safetensors")) == weights);
  auto training_notes =
      convert::seq2seq_from_torch(dir.file("training.pt"), dir.file("config.yaml"),
                                  dir.file("spm/spm.model"), dir.file("out-training"));
  EXPECT_NE(training_notes.at(0).find("read the weights under 'model'"), std::string::npos);
  EXPECT_TRUE(read_file(dir.file("out-training/model.safetensors")) == weights);

  // The same checkpoint without one tensor, or with a vocabulary the config does not have.
  NamedTensors w = load_safetensors(dir.file("weights.safetensors"));
  std::erase_if(w, [](auto& p) { return p.first.ends_with("decoder.layers.1.norm3.weight"); });
  save_safetensors(dir.file("broken.safetensors"), w);
  expect_error<std::runtime_error>(
      [&] {
        convert::seq2seq_from_torch(dir.file("broken.safetensors"), dir.file("config.yaml"),
                                    dir.file("spm/spm.model"), dir.file("out2"));
      },
      {"missing tensor 'transformer.decoder.layers.1.norm3.weight'"});
  c.vocab_size += 1;
  model_dir::write_config(dir.file("config.yaml"), c);
  expect_error<std::runtime_error>(
      [&] {
        convert::seq2seq_from_torch(dir.file("weights.safetensors"), dir.file("config.yaml"),
                                    dir.file("spm/spm.model"), dir.file("out2"));
      },
      {"spm.model has", "vocab-size"});
}

INSTANTIATE_TEST_SUITE_P(Norms, TorchTransformer,
                         ::testing::Values(TorchCase{"relu", false}, TorchCase{"gelu", true}),
                         [](const auto& info) {
                           return std::string(info.param.activation) +
                                  (info.param.norm_first ? "_pre_norm" : "_post_norm");
                         });

nn::ViTConfig vit_config() {
  nn::ViTConfig c;
  c.channels = 3, c.image_size = 8, c.patch_size = 4;
  c.d_model = 16, c.heads = 2, c.d_ff = 32, c.layers = 2;
  c.classes = {"cat", "dog", "bird"};
  c.layer_norm_eps = 1e-12f, c.activation = "gelu_tanh";
  c.mean = {0.4f, 0.5f, 0.6f}, c.stddev = {0.2f, 0.25f, 0.3f};
  return c;
}

TEST(ViTConvert, HuggingFaceRoundTripIsBitIdentical) {
  ScratchDir dir("convert_vit");
  nn::ViTConfig c = vit_config();
  nn::ViT model(c);
  Rng rng(6);
  model.init(rng);
  model_dir::save_vit_dir(dir.file("qkv"), c, model.params());
  convert::vit_to_hf(dir.file("qkv"), dir.file("hf"));
  json cfg = json::parse(std::ifstream(dir.file("hf/config.json")));
  EXPECT_EQ(cfg["architectures"][0], "ViTForImageClassification");
  EXPECT_EQ(cfg["id2label"]["2"], "bird");
  EXPECT_EQ(cfg["hidden_act"], "gelu_new");
  json pre = json::parse(std::ifstream(dir.file("hf/preprocessor_config.json")));
  EXPECT_FLOAT_EQ(pre["image_std"][2].get<float>(), 0.3f);

  convert::vit_from_hf(dir.file("hf"), dir.file("back"));
  auto back = model_dir::load_vit_dir(dir.file("back"));
  const nn::ViTConfig& b = back->config();
  EXPECT_EQ(b.classes, c.classes);
  EXPECT_EQ(b.activation, c.activation);
  EXPECT_EQ(b.mean, c.mean);
  EXPECT_EQ(b.stddev, c.stddev);
  EXPECT_EQ(b.layer_norm_eps, c.layer_norm_eps);
  auto x = model.params(), y = back->params();
  ASSERT_EQ(x.size(), y.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const Tensor &p = x[i].second.value(), &q = y[i].second.value();
    EXPECT_EQ(x[i].first, y[i].first);
    EXPECT_EQ(std::memcmp(p.data<float>(), q.data<float>(), size_t(p.numel()) * 4), 0)
        << x[i].first;
  }
  Tensor images = randn({2, 3, 8, 8}, rng);
  expect_close(back->forward(images, {}).value(), model.forward(images, {}).value(), 0,
               "logits after the round trip");
}

TEST(ViTConvert, BadFoldersAreNamed) {
  ScratchDir dir("convert_vit_bad");
  nn::ViT model(vit_config());
  model_dir::save_vit_dir(dir.file("qkv"), vit_config(), model.params());
  convert::vit_to_hf(dir.file("qkv"), dir.file("hf"));
  std::string cfg_path = dir.file("hf/config.json");
  json cfg = json::parse(std::ifstream(cfg_path));
  auto with = [&](const std::function<void(json&)>& f) {
    json j = cfg;
    f(j);
    std::ofstream(cfg_path) << j.dump();
  };
  auto fails = [&](std::initializer_list<std::string> parts) {
    expect_error<std::runtime_error>([&] { convert::vit_from_hf(dir.file("hf"), dir.file("out")); },
                                     parts);
  };
  with([](json& j) { j["qkv_bias"] = false; });
  fails({"qkv_bias false"});
  with([](json& j) { j.erase("id2label"); });
  fails({"missing \"id2label\""});
  with([](json& j) { j["patch_size"] = 3; });
  fails({"image-size must be a positive multiple of patch-size"});
  with([](json& j) { j["hidden_size"] = 32; });
  fails({"vit.embeddings.cls_token", "[1, 1, 16]", "[1, 1, 32]"});
}

}  // namespace
}  // namespace qkv::test
