// Model directories (src/model_dir/): which family a folder holds, config.yaml files as earlier
// versions wrote them, and the one set of model keys that training options share with them.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "config/options.h"
#include "model_dir/model_dir.h"
#include "model_dir/seq2seq_dir.h"
#include "model_dir/vit_dir.h"
#include "support/data_files.h"
#include "train/train_config.h"
#include "train/vit_train_config.h"

namespace qkv {
namespace {

namespace fs = std::filesystem;
using test::ScratchDir;
using test::write_bytes;

// config.yaml as qkv train wrote it before model directories had their own module.
const char* kSeq2SeqConfigOfBefore = R"(model-type: seq2seq
vocab-size: 300
d-model: 32
heads: 2
d-ff: 64
encoder-layers: 1
decoder-layers: 1
activation: relu
pre-norm: false
tie-embeddings: true
dropout: 0.1
max-positions: 512
pad-id: 0
unk-id: 1
bos-id: 2
eos-id: 3
scale-embeddings: true
position-layout: interleaved
final-norm: false
source-eos: true
)";

// config.yaml as qkv train-vit wrote it before.
const char* kViTConfigOfBefore = R"(model-type: vit
channels: 1
image-size: 28
patch-size: 7
d-model: 16
heads: 2
d-ff: 32
layers: 1
classes: [T-shirt/top, Trouser]
dropout: 0
layer-norm-eps: 1e-06
activation: gelu
mean: [0.28604063]
std: [0.35302424]
)";

TEST(ModelDir, RecognisesEachFamily) {
  ScratchDir dir("model_dir_family");
  fs::create_directories(dir.file("mt"));
  fs::create_directories(dir.file("vit"));
  fs::create_directories(dir.file("empty"));
  fs::create_directories(dir.file("other"));
  write_bytes(dir.file("mt/config.yaml"), kSeq2SeqConfigOfBefore);
  write_bytes(dir.file("vit/config.yaml"), kViTConfigOfBefore);
  write_bytes(dir.file("other/config.yaml"), "model-type: gpt9\n");
  EXPECT_EQ(model_dir::recognise(dir.file("mt")), model_dir::Family::seq2seq);
  EXPECT_EQ(model_dir::recognise(dir.file("vit")), model_dir::Family::vit);
  EXPECT_EQ(model_dir::recognise(dir.file("empty")), std::nullopt);
  EXPECT_EQ(model_dir::recognise(dir.file("other")), std::nullopt);
  EXPECT_EQ(model_dir::recognise(dir.file("missing")), std::nullopt);
  EXPECT_EQ(model_dir::family(dir.file("vit")), model_dir::Family::vit);
  test::expect_error<std::runtime_error>([&] { model_dir::family(dir.file("missing")); },
                                         {"missing", "no such model directory"});
  test::expect_error<std::runtime_error>([&] { model_dir::family(dir.file("empty")); },
                                         {"not a qkv model directory (no config.yaml)"});
  test::expect_error<std::runtime_error>([&] { model_dir::family(dir.file("other")); },
                                         {"model-type 'gpt9'", "seq2seq, vit"});
}

TEST(ModelDir, ConfigFilesOfBeforeLoadAndRoundTrip) {
  ScratchDir dir("model_dir_configs");
  std::string mt = write_bytes(dir.file("mt.yaml"), kSeq2SeqConfigOfBefore);
  nn::Seq2SeqConfig s = model_dir::read_seq2seq_config(mt);
  EXPECT_EQ(s.vocab_size, 300);
  EXPECT_EQ(s.d_model, 32);
  EXPECT_EQ(s.max_positions, 512);
  EXPECT_FLOAT_EQ(s.dropout, 0.1f);
  EXPECT_TRUE(s.source_eos);
  model_dir::write_config(dir.file("mt2.yaml"), s);
  nn::Seq2SeqConfig s2 = model_dir::read_seq2seq_config(dir.file("mt2.yaml"));
  EXPECT_EQ(s2.d_model, s.d_model);
  EXPECT_EQ(s2.source_eos, s.source_eos);
  EXPECT_EQ(s2.position_layout, s.position_layout);

  std::string vit = write_bytes(dir.file("vit.yaml"), kViTConfigOfBefore);
  nn::ViTConfig v = model_dir::read_vit_config(vit);
  EXPECT_EQ(v.classes, (std::vector<std::string>{"T-shirt/top", "Trouser"}));
  EXPECT_EQ(v.mean, std::vector<float>{0.28604063f});
  EXPECT_EQ(v.layer_norm_eps, 1e-6f);
  model_dir::write_config(dir.file("vit2.yaml"), v);
  EXPECT_EQ(model_dir::read_vit_config(dir.file("vit2.yaml")).stddev, v.stddev);

  // One family's file is not the other's.
  test::expect_error<std::runtime_error>([&] { model_dir::read_vit_config(mt); },
                                         {"mt.yaml", "model-type is 'seq2seq', expected vit"});
  test::expect_error<std::runtime_error>([&] { model_dir::read_seq2seq_config(vit); },
                                         {"vit.yaml", "model-type is 'vit', expected seq2seq"});
  write_bytes(dir.file("bad.yaml"), std::string(kViTConfigOfBefore) + "mean: [zero]\n");
  test::expect_error<std::runtime_error>([&] { model_dir::read_vit_config(dir.file("bad.yaml")); },
                                         {"bad.yaml", "mean", "'zero'"});
}

// A config.yaml without model-type (hand-written, or from before the key) is a translation
// model, as qkv has always read it.
TEST(ModelDir, ConfigWithoutModelTypeIsTranslation) {
  ScratchDir dir("model_dir_untyped");
  std::string text = kSeq2SeqConfigOfBefore;
  const std::string type_line = "model-type: seq2seq\n";
  ASSERT_EQ(text.find(type_line), 0u);
  fs::create_directories(dir.file("mt"));
  std::string path = write_bytes(dir.file("mt/config.yaml"), text.substr(type_line.size()));
  EXPECT_EQ(model_dir::read_seq2seq_config(path).d_model, 32);
  EXPECT_EQ(model_dir::recognise(dir.file("mt")), model_dir::Family::seq2seq);
  EXPECT_EQ(model_dir::family(dir.file("mt")), model_dir::Family::seq2seq);
}

TEST(ModelDir, WeightsOfBestOrLast) {
  ScratchDir dir("model_dir_weights");
  test::expect_error<std::runtime_error>([&] { model_dir::weights_path(dir.file(""), "best"); },
                                         {"no model.safetensors"});
  write_bytes(dir.file("model.safetensors"), "");
  EXPECT_EQ(model_dir::weights_path(dir.file(""), "best"), dir.file("model.safetensors"));
  write_bytes(dir.file("model.best.safetensors"), "");
  EXPECT_EQ(model_dir::weights_path(dir.file(""), "best"), dir.file("model.best.safetensors"));
  EXPECT_EQ(model_dir::weights_path(dir.file(""), "last"), dir.file("model.safetensors"));
  EXPECT_THROW(model_dir::weights_path(dir.file(""), "first"), std::invalid_argument);
}

// The training options and config.yaml share the model's keys; a preset is changed by the
// ones given, wherever given, and 0 (as train.yaml records an unset one) keeps the preset's.
TEST(ModelDir, TrainingPresetsWithOverrides) {
  ScratchDir dir("model_dir_presets");
  std::string yaml = write_bytes(dir.file("train.yaml"),
                                 "preset: small\nd-model: 1024\nheads: 0\nmax-positions: 300\n");
  train::TrainConfig t;
  Options o;
  t.bind(o);
  o.load_yaml(yaml);
  nn::Seq2SeqConfig c = t.model_config(5000);
  EXPECT_EQ(c.d_model, 1024);
  EXPECT_EQ(c.heads, 8);
  EXPECT_EQ(c.d_ff, 2048);
  EXPECT_EQ(c.encoder_layers, 3);
  EXPECT_EQ(c.activation, "relu");
  EXPECT_EQ(c.max_positions, 300);
  EXPECT_EQ(c.vocab_size, 5000);
  EXPECT_TRUE(c.source_eos);

  train::TrainConfig defaults;
  nn::Seq2SeqConfig tiny = defaults.model_config(8000);
  EXPECT_EQ(tiny.d_model, 256);
  EXPECT_EQ(tiny.max_positions, 512);
  EXPECT_EQ(defaults.model.vocab_size, 8000);  // of the SentencePiece model trained

  std::string vit_yaml = write_bytes(dir.file("vit.yaml"), "preset: vit-b16\npatch-size: 32\n");
  train::ViTTrainConfig v;
  Options vo;
  v.bind(vo);
  vo.load_yaml(vit_yaml);
  nn::ViTConfig vc = v.model_config();
  EXPECT_EQ(vc.patch_size, 32);
  EXPECT_EQ(vc.image_size, 224);
  EXPECT_EQ(vc.channels, 3);
  EXPECT_EQ(vc.layer_norm_eps, 1e-12f);
  EXPECT_EQ(vc.mean.size(), 3u);
}

}  // namespace
}  // namespace qkv
