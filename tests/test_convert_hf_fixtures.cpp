// Models that `transformers` itself wrote (tests/data/hf, made by tests/python/make_hf_fixtures.py
// on a machine with transformers): converted to qkv, they must give transformers' tokens, logits
// (relative 1e-4), greedy translations (token for token and as text) and ViT logits (Hugging
// Face's and timm's). Skipped, with a message, where the fixtures have not been made yet.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "convert/hf_marian.h"
#include "convert/hf_vit.h"
#include "convert/timm_vit.h"
#include "data/batcher.h"
#include "decode/translator.h"
#include "io/safetensors.h"
#include "model_dir/seq2seq_dir.h"
#include "model_dir/vit_dir.h"
#include "nn/vit.h"
#include "support/data_files.h"
#include "support/torch_ref.h"

namespace qkv::test {
namespace {

namespace fs = std::filesystem;

const std::string kFixtures = std::string(QKV_SOURCE_DIR) + "/tests/data/hf";

std::map<std::string, Tensor> expected(const std::string& dir) {
  std::map<std::string, Tensor> out;
  for (auto& [name, t] : load_safetensors(dir + "/expected.safetensors")) out[name] = t;
  return out;
}

#define SKIP_WITHOUT(dir)                                                                   \
  if (!fs::exists(dir + "/expected.json"))                                                  \
  GTEST_SKIP() << dir << " is missing: run tests/python/make_hf_fixtures.py tests/data/hf " \
               << "where transformers is installed"

TEST(HfFixtures, MarianMatchesTransformers) {
  std::string hf = kFixtures + "/marian";
  SKIP_WITHOUT(hf);
  ScratchDir dir("hf_fixture_marian");
  convert::marian_from_hf(hf, dir.file("qkv"));
  model_dir::TranslationModel m = model_dir::load_translation_dir(dir.file("qkv"));
  const nn::Seq2SeqConfig& c = m.model->config();
  auto want = expected(hf);
  nlohmann::json info = nlohmann::json::parse(std::ifstream(hf + "/expected.json"));
  auto sentences = info["sentences"].get<std::vector<std::string>>();

  // MarianTokenizer's ids: the sentence's pieces, </s>, then <pad> to the longest.
  const Tensor& ids = want["input_ids"];
  auto ours = m.tokenizer->encode_all(sentences);
  data::fit_sources(ours, c.max_positions, c.eos_id);
  data::Batch batch = data::make_source_batch(ours, c.pad_id);
  ASSERT_EQ(batch.src.shape(), ids.shape());
  EXPECT_EQ(batch.src.to_vector(), ids.to_vector());

  Var logits = m.model->forward(batch.src, batch.src_lengths, want["decoder_input_ids"], {});
  expect_close(logits.value(), want["logits"], 1e-4, "logits");

  decode::TranslatorOptions o;
  o.search.max_length_ratio = 0;
  o.search.max_length_offset = info["max_new_tokens"].get<int64_t>();
  decode::Translator translator(*m.model, *m.tokenizer, o);
  auto got = translator.translate(sentences);
  const Tensor& gen = want["generated"];  // [B, 1 + steps]: decoder start, tokens, </s>, <pad>...
  for (size_t i = 0; i < sentences.size(); ++i) {
    std::vector<int32_t> tokens;
    for (int64_t j = 1; j < gen.size(1); ++j) {
      int32_t t = gen.data<int32_t>()[int64_t(i) * gen.size(1) + j];
      if (t == c.eos_id || t == c.pad_id) break;
      tokens.push_back(t);
    }
    EXPECT_EQ(got[i][0].tokens, tokens) << sentences[i];
    EXPECT_EQ(got[i][0].text, info["texts"][i].get<std::string>()) << sentences[i];
  }
}

// Converts the ViT fixture `fixture` with `from` (vit_from_hf or vit_from_timm), checks the
// logits for its pixels, and returns the converted model's config.
using ViTConverter = std::vector<std::string> (*)(const std::string&, const std::string&);
nn::ViTConfig expect_vit_logits(const std::string& fixture, ViTConverter from) {
  ScratchDir dir("hf_fixture_vit");
  from(fixture, dir.file("qkv"));
  auto model = model_dir::load_vit_dir(dir.file("qkv"));
  auto want = expected(fixture);
  expect_close(model->forward(want["pixel_values"], {}).value(), want["logits"], 1e-4, "logits");
  return model->config();
}

TEST(HfFixtures, ViTMatchesTransformers) {
  std::string hf = kFixtures + "/vit";
  SKIP_WITHOUT(hf);
  nn::ViTConfig c = expect_vit_logits(hf, convert::vit_from_hf);
  EXPECT_EQ(c.classes, (std::vector<std::string>{"cat", "dog", "bird"}));
  EXPECT_EQ(c.mean, (std::vector<float>{0.4f, 0.5f, 0.6f}));
}

TEST(HfFixtures, TimmViTMatchesTimm) {
  std::string timm = kFixtures + "/timm_vit";
  SKIP_WITHOUT(timm);
  nn::ViTConfig c = expect_vit_logits(timm, convert::vit_from_timm);
  EXPECT_EQ(c.classes, (std::vector<std::string>{"cat", "dog", "bird", "fish"}));
}

}  // namespace
}  // namespace qkv::test
