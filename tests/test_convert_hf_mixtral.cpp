// qkv convert for Hugging Face MixtralForCausalLM folders: random models
// (tests/python/mixtral_fixtures.py: the classic per-expert layout in one file or two shards, and
// transformers 5's fused gate_up_proj / down_proj layout) converted to qkv give the logits of a
// float64 reference written from Mixtral's definition (relative 1e-4) and its greedy
// continuations through the KV cache (token for token); the fused layout gives the classic
// layout's weights bit for bit; written back as Hugging Face folders they give the same logits
// there and read back bit-identical; refused keys, options and missing experts are named.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "convert/hf_gpt2.h"
#include "convert/hf_llama.h"
#include "convert/hf_mixtral.h"
#include "data/corpus.h"
#include "data/lm_tokenizer.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "model_dir/gpt_dir.h"
#include "support/data_files.h"
#include "support/python_script.h"
#include "support/torch_ref.h"

namespace qkv::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
constexpr int kSpmVocab = 320;

// A SentencePiece model with Llama's ids (<unk> 0, <s> 1, </s> 2), trained once on the dev
// set's English side: the directory data::LmTokenizer::save wrote.
const std::string& spm_dir() {
  static ScratchDir dir("hf_mixtral_spm");
  static std::string path = [] {
    auto c = data::read_tsv(std::string(QKV_SOURCE_DIR) + "/data/bible.es-en.dev.tsv.xz");
    std::vector<std::string> lines(c.tgt.begin(), c.tgt.begin() + 400);
    data::LmTokenizerOptions o;
    o.vocab_size = kSpmVocab;
    data::LmTokenizer::train("sentencepiece", lines, o)->save(dir.file("tok"));
    return dir.file("tok");
  }();
  return path;
}

json mixtral_config() {
  return {{"vocab_size", kSpmVocab},
          {"hidden_size", 32},
          {"intermediate_size", 48},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 4},
          {"num_key_value_heads", 2},
          {"rms_norm_eps", 1e-5},
          {"rope_theta", 10000.0},
          {"max_position_embeddings", 64},
          {"tie_word_embeddings", false},
          {"hidden_act", "silu"},
          {"sliding_window", nullptr},
          {"num_local_experts", 4},
          {"num_experts_per_tok", 2},
          {"router_aux_loss_coef", 0.02},
          {"router_jitter_noise", 0.1},
          {"output_router_logits", false},
          {"bos_token_id", 1},
          {"eos_token_id", 2}};
}

// Writes a Mixtral folder into hf (with expected.safetensors): mixtral_config() with `config`
// over it, in `format` (safetensors or shards) and `layout` (classic or fused).
void make_folder(const std::string& hf, const json& config, const std::string& format,
                 const std::string& layout, int seed) {
  json spec = {{"config", mixtral_config()},
               {"seed", seed},
               {"format", format},
               {"layout", layout},
               {"tokenizer_model", spm_dir() + "/spm.model"}};
  spec["config"].update(config);
  fs::create_directories(hf);
  std::ofstream(hf + ".spec.json") << spec.dump();
  run_python_script("mixtral_fixtures.py", "make " + hf + " " + hf + ".spec.json");
}

std::map<std::string, Tensor> read_tensors(const std::string& path) {
  std::map<std::string, Tensor> out;
  for (auto& [name, t] : load_safetensors(path)) out[name] = t;
  return out;
}

// What the reference computes on the folder hf for `io`'s ids and prompts.
std::map<std::string, Tensor> reference(const std::string& hf, std::map<std::string, Tensor> io) {
  std::string path = hf + ".io.safetensors";
  save_safetensors(path, NamedTensors(io.begin(), io.end()));
  run_python_script("mixtral_fixtures.py", "run " + hf + " " + path);
  return read_tensors(path);
}

// Greedy continuations through the KV cache: the prompts (the first lengths[r] of row r real)
// prefilled together, then one token per row and step.
std::vector<std::vector<int32_t>> greedy(const nn::Gpt& model, const Tensor& prompts,
                                         const std::vector<int64_t>& lengths, int64_t steps) {
  int64_t n = prompts.size(0), v = model.config().vocab_size;
  nn::PackedGpt packed = model.pack();
  nn::KvCache cache = model.new_cache(n, prompts.size(1) + steps);
  Tensor logits = model.step(prompts, lengths, cache, packed);  // [n, V]
  std::vector<std::vector<int32_t>> out(static_cast<size_t>(n));
  for (int64_t s = 0; s < steps; ++s) {
    std::vector<int32_t> next;
    for (int64_t r = 0; r < n; ++r) {
      const float* row = logits.data<float>() + r * v;
      next.push_back(int32_t(std::max_element(row, row + v) - row));
      out[size_t(r)].push_back(next.back());
    }
    if (s + 1 < steps)
      logits = model.step(Tensor::from_vector(next, {n, 1}), std::vector<int64_t>(size_t(n), 1),
                          cache, packed);
  }
  return out;
}

// The model against the reference's outputs `want` (ids, logits, prompts, greedy).
void expect_reference_outputs(const nn::Gpt& model, std::map<std::string, Tensor> want,
                              const std::string& what) {
  expect_close(model.forward(want["ids"], nn::Context{}).value(), want["logits"], 1e-4,
               what + ": logits");
  std::vector<int64_t> lengths;
  for (int64_t r = 0; r < want["prompt_lengths"].numel(); ++r)
    lengths.push_back(want["prompt_lengths"].data<int32_t>()[r]);
  const Tensor& expected = want["greedy"];
  auto got = greedy(model, want["prompt_ids"], lengths, expected.size(1));
  for (size_t r = 0; r < got.size(); ++r) {
    const int32_t* row = expected.data<int32_t>() + int64_t(r) * expected.size(1);
    EXPECT_EQ(got[r], std::vector<int32_t>(row, row + expected.size(1)))
        << what << ": greedy continuation of prompt " << r;
  }
}

// qkv_dir -> hf -> qkv: the reference gives the model's logits on the exported folder, which
// holds the classic layout, and the qkv files come back byte for byte.
void expect_round_trip(const std::string& qkv_dir, const std::string& scratch) {
  std::string hf = scratch + "_hf", back = scratch + "_back";
  convert::mixtral_to_hf(qkv_dir, hf, "best");
  model_dir::LanguageModel m = model_dir::load_language_model_dir(qkv_dir);
  const nn::GptConfig& c = m.model->config();
  json config = json::parse(std::ifstream(hf + "/config.json"));
  EXPECT_EQ(config["architectures"][0], "MixtralForCausalLM");
  EXPECT_EQ(config["num_local_experts"], c.moe.experts);
  EXPECT_EQ(config["num_experts_per_tok"], c.moe.top_k);
  auto exported = read_tensors(hf + "/model.safetensors");
  EXPECT_TRUE(exported.count("model.layers.1.block_sparse_moe.experts." +
                             std::to_string(c.moe.experts - 1) + ".w2.weight"));
  Rng rng(3);
  Tensor ids = rand_ids({2, 9}, int32_t(c.vocab_size), rng);
  auto want =
      reference(hf, {{"ids", ids},
                     {"prompt_ids", ids},
                     {"prompt_lengths", Tensor::from_vector(std::vector<int32_t>{9, 4}, {2})},
                     {"new_tokens", Tensor::from_vector(std::vector<int32_t>{3}, {1})}});
  expect_reference_outputs(*m.model, want, "exported folder");
  EXPECT_EQ(convert::mixtral_from_hf(hf, back), std::vector<std::string>{});
  for (const char* f : {"config.yaml", "model.safetensors", "tokenizer.yaml", "spm.model"})
    EXPECT_TRUE(read_file(qkv_dir + "/" + f) == read_file(back + "/" + f))
        << f << " differs after qkv -> hf -> qkv";
}

struct MixtralCase {
  std::string name;
  json config;  // over mixtral_config()
  std::string format, layout;
};

void PrintTo(const MixtralCase& c, std::ostream* os) {
  *os << c.name;
}

class HfMixtral : public ::testing::TestWithParam<MixtralCase> {};

TEST_P(HfMixtral, GivesTheReferenceOutputsAndRoundTripsBitIdentical) {
  const MixtralCase& c = GetParam();
  ScratchDir dir("hf_mixtral_" + c.name);
  std::string hf = dir.file("hf"), qkv = dir.file("qkv");
  make_folder(hf, c.config, c.format, c.layout, 11);
  EXPECT_EQ(convert::mixtral_from_hf(hf, qkv), std::vector<std::string>{});
  model_dir::LanguageModel m = model_dir::load_language_model_dir(qkv);
  const nn::GptConfig& cfg = m.model->config();
  json want = mixtral_config();
  want.update(c.config);
  EXPECT_EQ(cfg.moe.experts, want["num_local_experts"].get<int64_t>());
  EXPECT_EQ(cfg.moe.top_k, want["num_experts_per_tok"].get<int64_t>());
  EXPECT_EQ(cfg.moe.every, 1);
  EXPECT_EQ(cfg.moe.capacity_factor, 0.0);
  EXPECT_TRUE(cfg.rope() && cfg.rms_norm() && cfg.swiglu() && !cfg.bias && !cfg.tie_embeddings);
  EXPECT_EQ(cfg.ff_width(), want["intermediate_size"].get<int64_t>());
  expect_reference_outputs(*m.model, read_tensors(hf + "/expected.safetensors"), c.name);
  expect_round_trip(qkv, dir.file("rt"));
}

INSTANTIATE_TEST_SUITE_P(
    Folders, HfMixtral,
    ::testing::Values(MixtralCase{"classic", json::object(), "safetensors", "classic"},
                      MixtralCase{"classic_shards_top3_of_3_mha",
                                  {{"num_local_experts", 3},
                                   {"num_experts_per_tok", 3},
                                   {"num_key_value_heads", 4}},
                                  "shards",
                                  "classic"},
                      MixtralCase{"fused", json::object(), "safetensors", "fused"}),
    [](const auto& info) { return info.param.name; });

// One folder per layout, made once; each test edits a copy.
class HfMixtralFolder : public ::testing::Test {
 protected:
  static const std::string& folder(const std::string& layout) {
    static ScratchDir dir("hf_mixtral_folders");
    static std::map<std::string, std::string> made;
    if (!made.count(layout)) {
      made[layout] = dir.file(layout);
      make_folder(made[layout], json::object(), "safetensors", layout, 5);
    }
    return made.at(layout);
  }
  std::string copy(const std::string& layout) {
    std::string to = dir_.file(layout + std::to_string(copies_++));
    fs::copy(folder(layout), to);
    return to;
  }
  std::string out() { return dir_.file("out" + std::to_string(copies_++)); }
  static void edit_config(const std::string& hf, const std::function<void(json&)>& f) {
    json j = json::parse(std::ifstream(hf + "/config.json"));
    f(j);
    std::ofstream(hf + "/config.json") << j.dump();
  }
  // Rewrites hf's model.safetensors with `f` applied to its tensors.
  static void edit_tensors(const std::string& hf, const std::function<void(NamedTensors&)>& f) {
    NamedTensors t = load_safetensors(hf + "/model.safetensors");
    f(t);
    save_safetensors(hf + "/model.safetensors", t);
  }
  // Converting a copy of the folder, edited, fails naming every part and leaves nothing.
  void expect_refused(const std::string& layout, const std::function<void(const std::string&)>& f,
                      const std::vector<std::string>& parts) {
    std::string hf = copy(layout), o = out();
    f(hf);
    expect_error<std::runtime_error>([&] { convert::mixtral_from_hf(hf, o); }, parts);
    EXPECT_FALSE(fs::exists(o)) << "a failed conversion leaves its output behind";
  }
  void expect_config_refused(const std::function<void(json&)>& f,
                             const std::vector<std::string>& parts) {
    expect_refused(
        "classic", [&](const std::string& hf) { edit_config(hf, f); }, parts);
  }
  ScratchDir dir_{"hf_mixtral_edits"};
  int copies_ = 0;
};

TEST_F(HfMixtralFolder, TheFusedLayoutGivesTheClassicWeightsBitForBit) {
  std::string classic = out(), fused = out();
  convert::mixtral_from_hf(folder("classic"), classic);
  convert::mixtral_from_hf(folder("fused"), fused);
  EXPECT_TRUE(read_file(classic + "/model.safetensors") == read_file(fused + "/model.safetensors"));
  EXPECT_TRUE(read_file(classic + "/config.yaml") == read_file(fused + "/config.yaml"));
}

TEST_F(HfMixtralFolder, RefusesWhatQkvCannotComputeByName) {
  expect_config_refused([](json& j) { j["num_experts_per_tok"] = 5; },
                        {"config.json", "\"num_experts_per_tok\": 5", "num_local_experts = 4"});
  expect_config_refused([](json& j) { j["num_experts_per_tok"] = 1; },
                        {"\"num_experts_per_tok\": 1", "Switch"});
  expect_config_refused([](json& j) { j["num_local_experts"] = 0; }, {"\"num_local_experts\": 0"});
  expect_config_refused([](json& j) { j["sliding_window"] = 16; },
                        {"\"sliding_window\": 16", "max_position_embeddings 64"});
  expect_config_refused(
      [](json& j) { j["attention_bias"] = true; },
      {"\"attention_bias\": true", "MixtralForCausalLM conversion does not know"});
  expect_config_refused([](json& j) { j["architectures"] = {"LlamaForCausalLM"}; },
                        {"LlamaForCausalLM", "is not MixtralForCausalLM"});
  expect_config_refused([](json& j) { j["hidden_act"] = "gelu"; }, {"\"hidden_act\": \"gelu\""});
  // A window covering every position is full attention, and the router's training keys
  // change nothing: the same model as the folder's own.
  std::string hf = copy("classic"), edited = out(), plain = out();
  edit_config(hf, [](json& j) {
    j["sliding_window"] = 64, j["router_aux_loss_coef"] = 0.5, j["output_router_logits"] = true;
  });
  convert::mixtral_from_hf(hf, edited);
  convert::mixtral_from_hf(folder("classic"), plain);
  for (const char* f : {"config.yaml", "model.safetensors"})
    EXPECT_TRUE(read_file(edited + "/" + f) == read_file(plain + "/" + f)) << f;
  // Without the expert keys, MixtralConfig's 8 experts: the folder's 4 do not fit.
  expect_config_refused(
      [](json& j) { j.erase("num_local_experts"), j.erase("num_experts_per_tok"); },
      {"tensor 'model.layers.0.block_sparse_moe.gate.weight' has shape [4, 32], expected [8, 32]"});
}

TEST_F(HfMixtralFolder, MissingOrMisshapedExpertsAreNamed) {
  auto drop = [](const std::string& name) {
    return [name](const std::string& hf) {
      edit_tensors(hf, [&](NamedTensors& t) {
        std::erase_if(t, [&](const auto& p) { return p.first == name; });
      });
    };
  };
  expect_refused("classic", drop("model.layers.1.block_sparse_moe.experts.3.w2.weight"),
                 {"model.safetensors",
                  "missing tensor 'model.layers.1.block_sparse_moe.experts.3.w2.weight'"});
  expect_refused("fused", drop("model.layers.1.mlp.experts.gate_up_proj"),
                 {"missing tensor 'model.layers.1.mlp.experts.gate_up_proj'"});
  expect_refused("fused", drop("model.layers.0.mlp.gate.weight"),
                 {"missing tensor 'model.layers.0.mlp.gate.weight'"});
  // down_proj stored [E, ff, d] (transposed) instead of [E, d, ff].
  expect_refused("fused",
                 [](const std::string& hf) {
                   edit_tensors(hf, [](NamedTensors& t) {
                     for (auto& [name, tensor] : t)
                       if (name == "model.layers.0.mlp.experts.down_proj")
                         tensor = tensor.reshape({4, 48, 32});
                   });
                 },
                 {"tensor 'model.layers.0.mlp.experts.down_proj' has shape [4, 48, 32], "
                  "expected [4, 32, 48]"});
  // A fifth expert the config does not have.
  expect_refused("classic",
                 [](const std::string& hf) {
                   edit_tensors(hf, [](NamedTensors& t) {
                     t.emplace_back("model.layers.0.block_sparse_moe.experts.4.w1.weight",
                                    Tensor::zeros({48, 32}));
                   });
                 },
                 {"does not understand", "model.layers.0.block_sparse_moe.experts.4.w1.weight"});
}

// qkv's own MoE models with the spm tokenizer: a Llama shape, every layer 4 experts, top 2.
nn::GptConfig native_config() {
  nn::GptConfig c = nn::GptConfig::preset("llama-tiny");
  c.vocab_size = kSpmVocab, c.context_length = 32, c.d_model = 32, c.layers = 2, c.heads = 4;
  c.kv_heads = 2, c.tie_embeddings = true, c.bos_id = 1, c.eos_id = 2;
  c.moe.experts = 4, c.moe.top_k = 2, c.moe.every = 1;
  return c;
}

std::string save_native(const std::string& dir, const nn::GptConfig& c, Rng& rng) {
  nn::Gpt model(c);
  model.init(rng);
  for (auto& [name, p] : model.params())  // not the init's ones and zeros
    if (p.value().rank() == 1) p.mutable_value().copy_from(randn(p.value().shape(), rng, 0.3f));
  model_dir::save_gpt_dir(dir, c, model.params());
  for (const auto& f : fs::directory_iterator(spm_dir())) fs::copy(f.path(), dir);
  return dir;
}

TEST(MixtralToHf, QkvMoeModelsGiveTheirLogitsThereAndReadBackByteForByte) {
  ScratchDir dir("mixtral_to_hf");
  Rng rng(4);
  expect_round_trip(save_native(dir.file("native"), native_config(), rng), dir.file("native"));
  // The capacity factor only limits training: left out, with a note.
  nn::GptConfig c = native_config();
  c.moe.capacity_factor = 1.25;
  std::string capped = save_native(dir.file("capped"), c, rng);
  auto notes = convert::mixtral_to_hf(capped, dir.file("capped_hf"));
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("moe-capacity-factor 1.25"), std::string::npos) << notes[0];
}

TEST(MixtralToHf, RefusesWhatTheArchitecturesCannotExpressByName) {
  ScratchDir dir("mixtral_to_hf_refused");
  Rng rng(6);
  int n = 0;
  auto refused = [&](const std::function<void(nn::GptConfig&)>& edit, auto to_hf,
                     const std::string& message) {
    nn::GptConfig c = native_config();
    edit(c);
    std::string qkv = save_native(dir.file("m" + std::to_string(n++)), c, rng);
    std::string hf = dir.file("hf" + std::to_string(n++));
    expect_error<std::runtime_error>([&] { to_hf(qkv, hf, "best"); }, {qkv, message});
    EXPECT_FALSE(fs::exists(hf) && !fs::is_empty(hf)) << message;
  };
  refused([](nn::GptConfig& c) { c.moe.every = 2; }, convert::mixtral_to_hf,
          "MixtralForCausalLM needs moe-every 1, not 2");
  refused([](nn::GptConfig& c) { c.moe.top_k = 1; }, convert::mixtral_to_hf,
          "MixtralForCausalLM needs moe-top-k of at least 2, not 1");
  refused([](nn::GptConfig& c) { c.bias = true; }, convert::mixtral_to_hf,
          "MixtralForCausalLM needs bias false, not true");
  refused([](nn::GptConfig& c) { c.mlp = "gelu"; }, convert::mixtral_to_hf,
          "MixtralForCausalLM needs mlp swiglu, not gelu");
  refused([](nn::GptConfig& c) { c.moe.experts = 0; }, convert::mixtral_to_hf,
          "MixtralForCausalLM needs moe-experts of at least 1, not 0");
  refused([](nn::GptConfig&) {}, convert::llama_to_hf,
          "LlamaForCausalLM needs moe-experts 0, not 4");
  refused(
      [](nn::GptConfig& c) {
        c.positions = "learned", c.norm = "layernorm", c.mlp = "gelu", c.bias = true;
        c.kv_heads = 0;
      },
      convert::gpt2_to_hf, "GPT2LMHeadModel needs moe-experts 0, not 4");
}

}  // namespace
}  // namespace qkv::test
