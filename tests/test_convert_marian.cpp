// qkv convert for Hugging Face MarianMTModel folders: a random MarianMTModel (weights written as
// save_pretrained writes them, tokenizer files from SentencePiece models trained here) converted
// to qkv gives the logits (relative 1e-4) and greedy translations (token for token) of a float64
// PyTorch MarianMTModel (tests/python/hf_marian_reference.py); a qkv model written as a
// MarianMTModel gives its own logits and translations there, and reads back bit-identical; bad
// folders give errors naming what is wrong.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "convert/hf_marian.h"
#include "convert/json_file.h"
#include "data/batcher.h"
#include "data/corpus.h"
#include "decode/translator.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "model_dir/seq2seq_dir.h"
#include "support/data_files.h"
#include "support/python_script.h"
#include "support/torch_ref.h"

namespace qkv::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const data::ParallelCorpus& dev() {
  static data::ParallelCorpus c =
      data::read_tsv(std::string(QKV_SOURCE_DIR) + "/data/bible.es-en.dev.tsv.xz");
  return c;
}

// n short source sentences (at most 60 bytes), from the first-th short one on.
std::vector<std::string> sentences(size_t first, size_t n) {
  std::vector<std::string> out;
  size_t seen = 0;
  for (const auto& s : dev().src) {
    if (s.size() > 60 || seen++ < first) continue;
    out.push_back(s);
    if (out.size() == n) break;
  }
  return out;
}

data::Tokenizer train_spm(const std::vector<std::string>& text, int vocab) {
  std::vector<std::string_view> views(text.begin(), text.end());
  data::TokenizerOptions o;
  o.vocab_size = vocab;
  o.model_type = "bpe";
  return data::Tokenizer::train(views, o);
}

// A Marian tokenizer in `dir`: source.spm (Spanish), target.spm (English) and a vocab.json with
// </s> 0, <unk> 1, the pieces of both, <pad> last (as OPUS-MT's). Returns the vocabulary size.
int32_t write_marian_tokenizer(const std::string& dir) {
  std::vector<std::string> es(dev().src.begin(), dev().src.begin() + 300),
      en(dev().tgt.begin(), dev().tgt.begin() + 300);
  data::Tokenizer src = train_spm(es, 150), tgt = train_spm(en, 150);
  write_bytes(dir + "/source.spm", src.serialized());
  write_bytes(dir + "/target.spm", tgt.serialized());
  nlohmann::ordered_json vocab = {{"</s>", 0}, {"<unk>", 1}};
  for (const data::Tokenizer* t : {&src, &tgt})
    for (int32_t i = 4; i < t->vocab_size(); ++i)  // 0-3: SentencePiece's own specials
      if (!vocab.contains(t->piece(i))) vocab[t->piece(i)] = int(vocab.size());
  vocab["<pad>"] = int(vocab.size());
  std::ofstream(dir + "/vocab.json") << vocab.dump();
  return int32_t(vocab.size());
}

json marian_spec(int32_t vocab) {
  return {{"vocab_size", vocab},
          {"d_model", 32},
          {"encoder_layers", 2},
          {"decoder_layers", 2},
          {"encoder_attention_heads", 4},
          {"decoder_attention_heads", 4},
          {"encoder_ffn_dim", 64},
          {"decoder_ffn_dim", 64},
          {"activation_function", "swish"},
          {"scale_embedding", true},
          {"max_position_embeddings", 64},
          {"pad_token_id", vocab - 1},
          {"eos_token_id", 0},
          {"decoder_start_token_id", vocab - 1},
          {"share_encoder_decoder_embeddings", true},
          {"tie_word_embeddings", true},
          {"seed", 5}};
}

// A Marian folder with random weights from the reference script.
void make_marian(const std::string& dir, const json& spec) {
  std::string spec_path = dir + "/spec.json";
  std::ofstream(spec_path) << spec.dump();
  run_python_script("hf_marian_reference.py", "make " + dir + " " + spec_path);
  fs::remove(spec_path);
}

struct Reference {
  Tensor logits;
  std::vector<std::vector<int32_t>> greedy;  // without the final <eos>
};

// The reference's logits for (src, tgt_in) and greedy outputs of at most max_new tokens.
Reference reference(const std::string& hf_dir, const data::Batch& src, const Tensor& tgt_in,
                    int64_t max_new, int32_t eos) {
  std::string io = hf_dir + "/io.safetensors";
  int64_t b = src.size();
  save_safetensors(
      io,
      {{"src", (src.src)},
       {"src_len", (src.src_lengths)},
       {"tgt_in", (tgt_in)},
       {"max_new", Tensor::from_vector(std::vector<int32_t>(size_t(b), int32_t(max_new)), {b})}});
  run_python_script("hf_marian_reference.py", "run " + hf_dir + " " + io);
  Reference r;
  for (auto& [name, t] : load_safetensors(io)) {
    if (name == "logits") r.logits = t;
    if (name != "greedy") continue;
    for (int64_t i = 0; i < b; ++i) {
      std::vector<int32_t> row;
      for (int64_t j = 0; j < t.size(1); ++j) {
        int64_t v = t.data<int64_t>()[i * t.size(1) + j];
        if (v < 0 || v == eos) break;
        row.push_back(int32_t(v));
      }
      r.greedy.push_back(row);
    }
  }
  fs::remove(io);
  return r;
}

// qkv's logits and greedy translations of `lines` (at most max_new tokens with <eos>) against
// the reference on the Hugging Face folder.
void expect_same_as_reference(const std::string& hf_dir, const model_dir::TranslationModel& m,
                              const std::vector<std::string>& lines, Rng& rng) {
  const nn::Seq2SeqConfig& c = m.model->config();
  auto ids = m.tokenizer->encode_all(lines);
  data::fit_sources(ids, c.max_positions, c.source_eos ? c.eos_id : -1);
  data::Batch batch = data::make_source_batch(ids, c.pad_id);
  Tensor tgt_in = rand_ids({batch.size(), 7}, int32_t(c.vocab_size), rng);
  for (int64_t i = 0; i < batch.size(); ++i) tgt_in.data<int32_t>()[i * 7] = c.bos_id;
  const int64_t max_new = 9;
  Reference want = reference(hf_dir, batch, tgt_in, max_new, c.eos_id);
  Var logits = m.model->forward(batch.src, batch.src_lengths, tgt_in, nn::Context{});
  expect_close(logits.value(), want.logits, 1e-4, "logits");

  decode::TranslatorOptions o;
  o.search.max_length_ratio = 0, o.search.max_length_offset = max_new;
  decode::Translator translator(*m.model, *m.tokenizer, o);
  auto got = translator.translate(lines);
  size_t tokens = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(got[i][0].tokens, want.greedy[i]) << "sentence " << i << ": " << lines[i];
    tokens += want.greedy[i].size();
  }
  EXPECT_GT(tokens, lines.size() * 2) << "the reference ends almost every output at once";
}

struct MarianCase {
  std::string name;
  json options;  // config.json fields over marian_spec's
};

class MarianFromHf : public ::testing::TestWithParam<MarianCase> {};

TEST_P(MarianFromHf, GivesTheReferenceLogitsAndTranslations) {
  ScratchDir dir("marian_from_hf");
  std::string hf = dir.file("hf"), out = dir.file("qkv");
  fs::create_directories(hf);
  json spec = marian_spec(write_marian_tokenizer(hf));
  spec.update(GetParam().options);
  make_marian(hf, spec);
  convert::marian_from_hf(hf, out);
  model_dir::TranslationModel m = model_dir::load_translation_dir(out);
  const nn::Seq2SeqConfig& c = m.model->config();
  EXPECT_TRUE(c.source_eos);
  EXPECT_EQ(c.position_layout, "halves");
  EXPECT_EQ(c.bos_id, spec["decoder_start_token_id"].get<int32_t>());
  EXPECT_FALSE(m.tokenizer->joint());
  Rng rng(3);
  expect_same_as_reference(hf, m, sentences(0, 6), rng);
}

INSTANTIATE_TEST_SUITE_P(
    Options, MarianFromHf,
    ::testing::Values(MarianCase{"opus", json::object()},  // swish, scaled embeddings, tied
                      MarianCase{"gelu_new_unscaled_untied",
                                 {{"activation_function", "gelu_new"},
                                  {"scale_embedding", false},
                                  {"tie_word_embeddings", false}}},
                      MarianCase{"relu", {{"activation_function", "relu"}}}),
    [](const auto& info) { return info.param.name; });

// A qkv model directory with random weights (interleaved positions, qkv's joint tokenizer).
std::string make_qkv_model(const ScratchDir& dir, Rng& rng) {
  std::string out = dir.file("qkv");
  std::vector<std::string> text(dev().src.begin(), dev().src.begin() + 200);
  text.insert(text.end(), dev().tgt.begin(), dev().tgt.begin() + 200);
  data::Tokenizer tok = train_spm(text, 200);
  nn::Seq2SeqConfig c;
  c.vocab_size = tok.vocab_size(), c.d_model = 32, c.heads = 4, c.d_ff = 64;
  c.encoder_layers = 2, c.decoder_layers = 2, c.activation = "gelu", c.max_positions = 64;
  nn::Seq2Seq model(c);
  model.init(rng);
  for (auto& [name, p] : model.params())
    if (name == "final_logits_bias" || name.ends_with(".bias"))
      p.mutable_value().copy_from(randn(p.value().shape(), rng, 0.3f));
  model_dir::save_translation_dir(out, c, tok, model.params());
  return out;
}

TEST(MarianToHf, GivesTheSameOutputsThereAndReadsBackBitIdentical) {
  ScratchDir dir("marian_to_hf");
  Rng rng(8);
  std::string qkv_dir = make_qkv_model(dir, rng), hf = dir.file("hf"), back = dir.file("back");
  auto notes = convert::marian_to_hf(qkv_dir, hf);
  ASSERT_EQ(notes.size(), 1u);  // trained without <eos> after the source
  for (const char* f :
       {"config.json", "generation_config.json", "tokenizer_config.json", "special_tokens_map.json",
        "vocab.json", "source.spm", "target.spm", "model.safetensors"})
    EXPECT_TRUE(fs::exists(hf + "/" + f)) << f;
  model_dir::TranslationModel m = model_dir::load_translation_dir(qkv_dir);
  expect_same_as_reference(hf, m, sentences(10, 5), rng);

  convert::marian_from_hf(hf, back);
  model_dir::TranslationModel again = model_dir::load_translation_dir(back);
  EXPECT_TRUE(again.tokenizer->joint());
  EXPECT_EQ(again.tokenizer->serialized(), m.tokenizer->serialized());
  EXPECT_EQ(again.model->config().position_layout, "interleaved");
  auto a = m.model->params(), b = again.model->params();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    const Tensor &x = a[i].second.value(), &y = b[i].second.value();
    ASSERT_EQ(x.shape(), y.shape()) << a[i].first;
    EXPECT_EQ(std::memcmp(x.data<float>(), y.data<float>(), size_t(x.numel()) * 4), 0)
        << a[i].first << " differs after qkv -> hf -> qkv";
  }
}

TEST(MarianToHf, RefusesWhatMarianCannotExpress) {
  ScratchDir dir("marian_to_hf_bad");
  Rng rng(9);
  std::string qkv_dir = make_qkv_model(dir, rng);
  nn::Seq2SeqConfig c = model_dir::read_seq2seq_config(qkv_dir + "/config.yaml");
  c.pre_norm = true;
  model_dir::write_config(qkv_dir + "/config.yaml", c);
  nn::Seq2Seq pre(c);
  pre.init(rng);
  save_safetensors(qkv_dir + "/model.safetensors", nn::param_tensors(pre.params()));
  expect_error<std::runtime_error>([&] { convert::marian_to_hf(qkv_dir, dir.file("hf")); },
                                   {"post-norm", "pre-norm"});
}

class MarianFolder : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(hf_);
    make_marian(hf_, marian_spec(write_marian_tokenizer(hf_)));
  }
  void edit_config(const std::function<void(json&)>& f) {
    json j = json::parse(std::ifstream(hf_ + "/config.json"));
    f(j);
    std::ofstream(hf_ + "/config.json") << j.dump();
  }
  void edit_weights(const std::function<void(NamedTensors&)>& f) {
    NamedTensors t = load_safetensors(hf_ + "/model.safetensors");
    f(t);
    save_safetensors(hf_ + "/model.safetensors", t, {{"format", "pt"}});
  }
  void expect_failure(std::initializer_list<std::string> parts) {
    expect_failure_into(dir_.file("out"), parts);
  }
  void expect_failure_into(const std::string& out, std::initializer_list<std::string> parts) {
    expect_error<std::runtime_error>([&] { convert::marian_from_hf(hf_, out); }, parts);
  }
  ScratchDir dir_{"marian_errors"};
  std::string hf_ = dir_.file("hf");
};

TEST_F(MarianFolder, ReadsHalfPrecisionWeights) {
  NamedTensors f32 = load_safetensors(hf_ + "/model.safetensors");
  for (DType half : {DType::f16, DType::bf16}) {
    edit_weights([&](NamedTensors& t) {
      for (size_t i = 0; i < t.size(); ++i) t[i].second = f32[i].second.cast(half);
    });
    std::string out = dir_.file("out-" + dtype_name(half));
    convert::marian_from_hf(hf_, out);
    std::map<std::string, Tensor> got;
    for (auto& [name, t] : load_safetensors(out + "/model.safetensors")) got[name] = t;
    for (const auto& [name, t] : f32) {
      std::string qkv_name = name;
      Tensor want = t.cast(half).cast(DType::f32);  // what the file holds, widened exactly
      if (name == "final_logits_bias") want = want.reshape({want.numel()});
      ASSERT_TRUE(got.count(qkv_name)) << qkv_name;
      EXPECT_EQ(got[qkv_name].to_vector(), want.to_vector()) << name << " as " << dtype_name(half);
    }
  }
}

TEST_F(MarianFolder, WritesOnlyIntoANewDirectory) {
  std::string out = dir_.file("used");
  fs::create_directories(out);
  std::ofstream(out + "/model.best.safetensors") << "an older model";
  expect_failure_into(out, {"used exists and is not an empty directory"});
}

TEST_F(MarianFolder, MissingTensor) {
  edit_weights([](NamedTensors& t) {
    std::erase_if(t, [](auto& p) { return p.first == "model.decoder.layers.1.fc2.bias"; });
  });
  expect_failure({"missing tensor 'model.decoder.layers.1.fc2.bias'"});
}

TEST_F(MarianFolder, WrongShape) {
  edit_weights([](NamedTensors& t) {
    for (auto& [name, x] : t)
      if (name == "model.encoder.layers.0.fc1.weight") x = Tensor::zeros({65, 32});
  });
  expect_failure({"model.encoder.layers.0.fc1.weight", "[65, 32]", "[64, 32]"});
}

TEST_F(MarianFolder, UnknownTensor) {
  edit_weights([](NamedTensors& t) {
    t.emplace_back("model.encoder.layernorm_embedding.weight", Tensor::zeros({32}));
  });
  expect_failure({"does not understand", "model.encoder.layernorm_embedding.weight"});
}

TEST_F(MarianFolder, OtherArchitectureOrOptions) {
  edit_config([](json& j) { j["architectures"] = {"BartForConditionalGeneration"}; });
  expect_failure({"config.json", "is not MarianMTModel"});
  edit_config([](json& j) {
    j["architectures"] = {"MarianMTModel"};
    j["decoder_ffn_dim"] = 128;
  });
  expect_failure({"encoder_ffn_dim 64 and decoder_ffn_dim 128 differ"});
  edit_config([](json& j) {
    j["decoder_ffn_dim"] = 64;
    j["activation_function"] = "mish";
  });
  expect_failure({"activation_function \"mish\""});
  edit_config([](json& j) {
    j["activation_function"] = "swish";
    j["static_position_embeddings"] = false;
  });
  expect_failure({"learned position embeddings"});
  edit_config([](json& j) { j["static_position_embeddings"] = true; });
  edit_config([](json& j) { j.erase("d_model"); });
  expect_failure({"config.json", "missing \"d_model\""});
}

// The same weights as torch.save writes them (transformers before safetensors, and the legacy
// format of 2020's OPUS-MT conversions), tied embeddings sharing one storage: the same model.
TEST_F(MarianFolder, ReadsPytorchModelBin) {
  convert::marian_from_hf(hf_, dir_.file("from-safetensors"));
  std::string want = read_file(dir_.file("from-safetensors/model.safetensors"));
  for (const char* format : {"zip", "legacy"}) {
    std::string bin = dir_.file(std::string("bin-") + format);
    fs::copy(hf_, bin);
    fs::remove(bin + "/model.safetensors");
    run_python_script("torch_checkpoints.py",
                      "from-safetensors " + hf_ + "/model.safetensors " + bin +
                          "/pytorch_model.bin " + format +
                          " model.shared.weight,model.encoder.embed_tokens.weight,"
                          "model.decoder.embed_tokens.weight");
    convert::marian_from_hf(bin, bin + "-qkv");
    EXPECT_TRUE(read_file(bin + "-qkv/model.safetensors") == want) << format;
  }
}

// Large models come in shards that NAME.index.json's "weight_map" lists, in either format.
TEST_F(MarianFolder, ReadsShardedWeights) {
  convert::marian_from_hf(hf_, dir_.file("single"));
  std::string want = read_file(dir_.file("single/model.safetensors"));
  NamedTensors all = load_safetensors(hf_ + "/model.safetensors");
  for (std::string weights : {"model.safetensors", "pytorch_model.bin"}) {
    std::string sharded = dir_.file("sharded-" + weights);
    fs::copy(hf_, sharded);
    fs::remove(sharded + "/model.safetensors");
    json map;
    for (int part = 0; part < 2; ++part) {  // tensors alternate between two shards
      NamedTensors half;
      for (size_t i = size_t(part); i < all.size(); i += 2) half.push_back(all[i]);
      std::string name = weights + "-0000" + std::to_string(part + 1) + "-of-00002";
      save_safetensors(sharded + "/part.safetensors", half);
      if (weights == "model.safetensors")
        fs::rename(sharded + "/part.safetensors", sharded + "/" + name);
      else
        run_python_script(
            "torch_checkpoints.py",
            "from-safetensors " + sharded + "/part.safetensors " + sharded + "/" + name + " zip");
      fs::remove(sharded + "/part.safetensors");
      for (const auto& [tensor, t] : half) map["weight_map"][tensor] = name;
    }
    std::ofstream(sharded + "/" + weights + ".index.json") << map.dump();
    convert::marian_from_hf(sharded, sharded + "-qkv");
    EXPECT_TRUE(read_file(sharded + "-qkv/model.safetensors") == want) << weights;
  }
  // A shard name that leaves the folder is refused.
  std::ofstream(dir_.file("sharded-model.safetensors/model.safetensors.index.json"))
      << R"({"weight_map": {"final_logits_bias": "../model.safetensors"}})";
  expect_error<std::runtime_error>(
      [&] {
        convert::marian_from_hf(dir_.file("sharded-model.safetensors"), dir_.file("escaped"));
      },
      {"shard name '../model.safetensors' is not a file name"});
}

TEST_F(MarianFolder, MissingFiles) {
  fs::rename(hf_ + "/model.safetensors", hf_ + "/model.bin");
  expect_failure({"no model.safetensors, pytorch_model.bin"});
  std::ofstream(hf_ + "/pytorch_model.bin") << "<html>an error page saved by mistake</html>";
  expect_failure({"pytorch_model.bin", "not a torch.save checkpoint"});
  fs::remove(hf_ + "/vocab.json");
  expect_failure({"vocab.json", "cannot open"});
  std::ofstream(hf_ + "/config.json") << "{\"d_model\": ";
  expect_failure({"config.json", "not valid JSON"});
}

TEST(MarianPositions, HalvesAreAPermutationOfInterleaved) {
  Tensor a = nn::sinusoidal_positions(9, 10),
         b = nn::sinusoidal_positions(9, 10, nn::PositionLayout::halves);
  auto perm = convert::halves_from_interleaved(10);
  for (int64_t p = 0; p < 9; ++p)
    for (int64_t j = 0; j < 10; ++j)
      EXPECT_EQ(b.data<float>()[p * 10 + j], a.data<float>()[p * 10 + perm[size_t(j)]]);
  // Marian's: sin(p / 10000^(2k/d)) in column k, cos in column d/2 + k.
  EXPECT_FLOAT_EQ(b.data<float>()[3 * 10 + 1], float(std::sin(3 / std::pow(10000.0, 0.2))));
  EXPECT_FLOAT_EQ(b.data<float>()[3 * 10 + 6], float(std::cos(3 / std::pow(10000.0, 0.2))));
}

}  // namespace
}  // namespace qkv::test
