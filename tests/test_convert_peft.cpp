// qkv convert with LoRA adapters: peft folders written from the format
// (tests/python/peft_fixtures.py) for random Hugging Face GPT-2 and Llama models
// (hf_gpt_fixtures.py) and ViT models, read with their converted models, give the logits of the
// float64 references with the updates merged (relative 1e-4): GPT-2's fused c_attn, Llama's
// q_proj and v_proj with rsLoRA, a rank_pattern and an alpha_pattern, ViT's query, value and
// intermediate.dense. Written back as peft folders of the
// exported Hugging Face models, the reference gives qkv's logits there, and read back they give
// the same logits (1e-6) with the same modules and ranks. A qkv adapter whose q and v projections
// differ in rank and scaling becomes one c_attn update of GPT-2. Bad input is named and
// leaves no output.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "convert/hf_gpt2.h"
#include "convert/hf_llama.h"
#include "convert/hf_vit.h"
#include "convert/peft_adapter.h"
#include "data/corpus.h"
#include "data/lm_tokenizer.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "model_dir/adapter_dir.h"
#include "model_dir/gpt_dir.h"
#include "model_dir/vit_dir.h"
#include "support/data_files.h"
#include "support/python_script.h"
#include "support/torch_ref.h"

namespace qkv::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
constexpr int kSpmVocab = 320;

// A SentencePiece model with Llama's special ids for the Llama folders, trained once.
const std::string& spm_model() {
  static ScratchDir dir("peft_spm");
  static std::string path = [] {
    auto c = data::read_tsv(std::string(QKV_SOURCE_DIR) + "/data/bible.es-en.dev.tsv.xz");
    data::LmTokenizerOptions o;
    o.vocab_size = kSpmVocab;
    auto tok = data::LmTokenizer::train("sentencepiece", {c.tgt.begin(), c.tgt.begin() + 400}, o);
    tok->save(dir.file("tok"));
    return dir.file("tok") + "/spm.model";
  }();
  return path;
}

// A random Hugging Face folder of arch (gpt2, llama: hf_gpt_fixtures.py; vit: peft_fixtures.py)
// in hf.
void make_hf(const std::string& hf, const std::string& arch) {
  if (arch == "vit") return run_python_script("peft_fixtures.py", "vit " + hf + " 5");
  json spec = {{"arch", arch}, {"seed", 3}, {"format", "safetensors"}};
  if (arch == "gpt2") {
    spec["config"] = {{"n_embd", 32},
                      {"n_layer", 2},
                      {"n_head", 4},
                      {"n_positions", 64},
                      {"n_inner", nullptr},
                      {"activation_function", "gelu_new"},
                      {"resid_pdrop", 0.0},
                      {"layer_norm_epsilon", 1e-5},
                      {"tie_word_embeddings", true}};
  } else {
    spec["config"] = {
        {"vocab_size", kSpmVocab},      {"hidden_size", 32},        {"intermediate_size", 64},
        {"num_hidden_layers", 2},       {"num_attention_heads", 4}, {"num_key_value_heads", 2},
        {"rms_norm_eps", 1e-6},         {"rope_theta", 10000.0},    {"max_position_embeddings", 64},
        {"tie_word_embeddings", false}, {"attention_bias", false},  {"mlp_bias", false},
        {"hidden_act", "silu"},         {"bos_token_id", 1},        {"eos_token_id", 2}};
    spec["tokenizer_model"] = spm_model();
  }
  fs::create_directories(hf);
  std::ofstream(hf + ".spec.json") << spec.dump();
  run_python_script("hf_gpt_fixtures.py", "make " + hf + " " + hf + ".spec.json");
}

// A peft folder for hf's model: spec's "config" over adapter_config.json, "format", "seed".
void make_peft(const std::string& hf, const std::string& peft, const json& spec) {
  std::ofstream(peft + ".spec.json") << spec.dump();
  run_python_script("peft_fixtures.py", "make " + hf + " " + peft + " " + peft + ".spec.json");
}

using Converter = std::vector<std::string> (*)(const std::string&, const std::string&);
Converter from_hf(const std::string& arch) {
  return arch == "gpt2"    ? convert::gpt2_from_hf
         : arch == "llama" ? convert::llama_from_hf
                           : convert::vit_from_hf;
}
using Exporter = std::vector<std::string> (*)(const std::string&, const std::string&,
                                              const std::string&);
Exporter to_hf(const std::string& arch) {
  return arch == "gpt2"    ? convert::gpt2_to_hf
         : arch == "llama" ? convert::llama_to_hf
                           : convert::vit_to_hf;
}

// The model's input in hf's expected.safetensors: "ids" (language models) or "images" (ViT).
std::pair<std::string, Tensor> input_of(const std::string& hf) {
  for (auto& [name, t] : load_safetensors(hf + "/expected.safetensors"))
    if (name == "ids" || name == "images") return {name, t};
  throw std::runtime_error(hf + ": no ids or images");
}

// The reference's logits of hf's model with peft's updates merged.
Tensor reference_logits(const std::string& hf, const std::string& peft,
                        const std::pair<std::string, Tensor>& input) {
  std::string io = peft + ".io.safetensors";
  save_safetensors(io, {input});
  run_python_script("peft_fixtures.py", "run " + hf + " " + peft + " " + io);
  for (auto& [name, t] : load_safetensors(io))
    if (name == "logits") return t;
  throw std::runtime_error("no logits");
}

// A converted model (GPT or ViT) with an adapter directory's update attached, as inference
// loads them, or none when adapter_dir is "".
struct AdaptedModel {
  std::unique_ptr<nn::Gpt> gpt;
  std::unique_ptr<nn::ViT> vit;
  nn::LoraAdapter adapter;
  AdaptedModel(const std::string& model, const std::string& adapter_dir) {
    bool is_vit = model_dir::family(model) == model_dir::Family::vit;
    if (is_vit)
      vit = model_dir::load_vit_dir(model);
    else
      gpt = std::move(model_dir::load_language_model_dir(model).model);
    if (adapter_dir.empty()) return;
    nn::LinearList linears = is_vit ? vit->linears() : gpt->linears();
    std::string checksum = nn::weights_checksum(is_vit ? vit->params() : gpt->params());
    adapter = model_dir::load_adapter(adapter_dir, "best", linears, model, checksum);
    nn::attach_lora(linears, adapter);
  }
  // ids [B, L] -> [B, L, V], or images [B, C, H, W] -> [B, classes].
  Tensor logits(const Tensor& input) const {
    return (vit ? vit->forward(input, nn::Context{}) : gpt->forward(input, nn::Context{})).value();
  }
};

// module -> rank of an adapter.
std::map<std::string, int64_t> ranks(const nn::LoraAdapter& a) {
  std::map<std::string, int64_t> out;
  for (const auto& [module, w] : a.modules) out[module] = w.a.shape()[0];
  return out;
}

json read_json(const std::string& path) {
  return json::parse(std::ifstream(path));
}

struct PeftCase {
  std::string name, arch;
  json spec;  // peft_fixtures.py make's
};

void PrintTo(const PeftCase& c, std::ostream* os) {
  *os << c.name;
}

class PeftFolder : public ::testing::TestWithParam<PeftCase> {};

TEST_P(PeftFolder, GivesTheReferenceLogitsAndRoundTrips) {
  const PeftCase& c = GetParam();
  ScratchDir dir("peft_" + c.name);
  auto f = [&](const char* name) { return dir.file(name); };
  make_hf(f("hf"), c.arch);
  make_peft(f("hf"), f("peft"), c.spec);
  auto input = input_of(f("hf"));

  from_hf(c.arch)(f("hf"), f("qkv"));
  convert::peft_adapter_from_hf(f("peft"), f("qkv"), f("adapter"));
  AdaptedModel qkv(f("qkv"), f("adapter"));
  Tensor logits = qkv.logits(input.second);
  expect_close(logits, reference_logits(f("hf"), f("peft"), input), 1e-4, "logits with adapter");
  EXPECT_GT(relative_error(logits, AdaptedModel(f("qkv"), "").logits(input.second)), 1e-2)
      << "the adapter hardly changes the model";
  EXPECT_EQ(model_dir::read_adapter_config(f("adapter")).base_model, f("qkv"));

  // To a peft folder of the exported model: the reference gives qkv's logits there.
  to_hf(c.arch)(f("qkv"), f("back_hf"), "best");
  convert::peft_adapter_to_hf(f("adapter"), f("qkv"), "best", f("back_hf"), f("back_peft"));
  json written = read_json(f("back_peft") + "/adapter_config.json");
  EXPECT_EQ(written["base_model_name_or_path"], f("back_hf"));
  EXPECT_EQ(written["target_modules"], c.spec["config"]["target_modules"]);
  EXPECT_EQ(written["task_type"], c.arch == "vit" ? json() : json("CAUSAL_LM"));
  expect_close(logits, reference_logits(f("back_hf"), f("back_peft"), input), 1e-4,
               "the exported adapter's logits");

  // And back to qkv: the same modules and ranks, the same logits.
  from_hf(c.arch)(f("back_hf"), f("back_qkv"));
  convert::peft_adapter_from_hf(f("back_peft"), f("back_qkv"), f("back_adapter"));
  AdaptedModel back(f("back_qkv"), f("back_adapter"));
  EXPECT_EQ(ranks(back.adapter), ranks(qkv.adapter));
  expect_close(back.logits(input.second), logits, 1e-6, "logits after qkv -> hf -> qkv");
}

INSTANTIATE_TEST_SUITE_P(
    Adapters, PeftFolder,
    ::testing::Values(
        PeftCase{
            "gpt2_c_attn_c_fc",
            "gpt2",
            {{"seed", 1},
             {"format", "safetensors"},
             {"config", {{"r", 4}, {"lora_alpha", 8}, {"target_modules", {"c_attn", "c_fc"}}}}}},
        PeftCase{"llama_rslora_patterns_bin",
                 "llama",
                 {{"seed", 2},
                  {"format", "bin"},
                  {"config",
                   {{"r", 4},
                    {"lora_alpha", 8},
                    {"use_rslora", true},
                    {"target_modules", {"q_proj", "v_proj"}},
                    {"rank_pattern", {{"q_proj", 6}}},
                    {"alpha_pattern", {{"v_proj", 12}}}}}}},
        PeftCase{"vit_query_value_intermediate",
                 "vit",
                 {{"seed", 3},
                  {"format", "safetensors"},
                  {"config",
                   {{"r", 4},
                    {"lora_alpha", 16},
                    {"target_modules", {"query", "value", "intermediate.dense"}}}}}}),
    [](const auto& info) { return info.param.name; });

// One GPT-2 folder, its qkv model and a peft adapter, made once; each test writes elsewhere.
class PeftGpt2 : public ::testing::Test {
 protected:
  static std::string shared(const std::string& name) {
    static ScratchDir dir("peft_gpt2_shared");
    static bool made = [] {
      make_hf(dir.file("hf"), "gpt2");
      convert::gpt2_from_hf(dir.file("hf"), dir.file("qkv"));
      make_peft(dir.file("hf"), dir.file("peft"),
                {{"seed", 4},
                 {"format", "safetensors"},
                 {"config", {{"r", 2}, {"lora_alpha", 4}, {"target_modules", {"c_attn"}}}}});
      return true;
    }();
    (void)made;
    return dir.file(name);
  }
  // A copy of the shared peft folder with its config edited by edit_config and its tensors by
  // edit_tensors.
  std::string edited_peft(const std::function<void(json&)>& edit_config,
                          const std::function<void(NamedTensors&)>& edit_tensors = {}) {
    std::string peft = dir_.file("peft" + std::to_string(copies_++));
    fs::copy(shared("peft"), peft);
    json c = read_json(peft + "/adapter_config.json");
    edit_config(c);
    std::ofstream(peft + "/adapter_config.json") << c.dump();
    if (edit_tensors) {
      std::string path = peft + "/adapter_model.safetensors";
      NamedTensors t = load_safetensors(path);
      edit_tensors(t);
      save_safetensors(path, t);
    }
    return peft;
  }
  void expect_refused(const std::string& peft, const std::vector<std::string>& parts) {
    std::string out = dir_.file("out");
    expect_error<std::runtime_error>(
        [&] { convert::peft_adapter_from_hf(peft, shared("qkv"), out); }, parts);
    EXPECT_FALSE(fs::exists(out)) << "a refused adapter leaves output behind";
  }
  ScratchDir dir_{"peft_gpt2_edits"};
  int copies_ = 0;
};

TEST_F(PeftGpt2, QAndVOfDifferentRankAndScalingBecomeOneCAttnUpdate) {
  model_dir::LanguageModel lm = model_dir::load_language_model_dir(shared("qkv"));
  nn::LinearList linears = lm.model->linears();
  std::string checksum = nn::weights_checksum(lm.model->params());
  // q_proj rank 2 (alpha 4: scaling 2), v_proj rank 3 (alpha 9: scaling 3), layer 1's o_proj.
  model_dir::AdapterConfig config;
  config.options.rank = 2, config.options.alpha = 4;
  config.options.targets = {"q_proj", "v_proj", "model.layers.1.self_attn.o_proj"};
  config.rank_pattern = {{"v_proj", 3}}, config.alpha_pattern = {{"v_proj", 9.0}};
  Rng rng(7);
  nn::LoraAdapter adapter;
  for (const auto& [module, linear] : linears) {
    bool v = module.ends_with("v_proj");
    if (!v && !module.ends_with("q_proj") && module != config.options.targets[2]) continue;
    int64_t r = v ? 3 : 2, out = linear->weight.shape()[0], in = linear->weight.shape()[1];
    adapter.modules[module] = {Var(randn({r, in}, rng, 0.2f)), Var(randn({out, r}, rng, 0.2f)),
                               config.scaling(module, r), 0.f};
  }
  model_dir::save_adapter(dir_.file("adapter"), config, adapter, checksum);
  AdaptedModel qkv(shared("qkv"), dir_.file("adapter"));
  auto input = input_of(shared("hf"));
  Tensor logits = qkv.logits(input.second);

  convert::gpt2_to_hf(shared("qkv"), dir_.file("hf"), "best");
  convert::peft_adapter_to_hf(dir_.file("adapter"), shared("qkv"), "best", dir_.file("hf"),
                              dir_.file("peft"));
  json peft = read_json(dir_.file("peft") + "/adapter_config.json");
  EXPECT_EQ(peft["target_modules"], json({"c_attn", "1.attn.c_proj"}));
  EXPECT_EQ(peft["r"], 2);
  EXPECT_EQ(peft["lora_alpha"], 4);
  EXPECT_EQ(peft["rank_pattern"], json({{"c_attn", 5}}));    // 2 + 3
  EXPECT_EQ(peft["alpha_pattern"], json({{"c_attn", 10}}));  // q's scaling 2 at rank 5
  EXPECT_EQ(peft["task_type"], "CAUSAL_LM");
  expect_close(logits, reference_logits(dir_.file("hf"), dir_.file("peft"), input), 1e-4,
               "the peft folder's logits");

  convert::gpt2_from_hf(dir_.file("hf"), dir_.file("back_qkv"));
  convert::peft_adapter_from_hf(dir_.file("peft"), dir_.file("back_qkv"), dir_.file("back"));
  AdaptedModel back(dir_.file("back_qkv"), dir_.file("back"));
  EXPECT_EQ(ranks(back.adapter), ranks(qkv.adapter));  // k_proj's empty block gives no update
  expect_close(back.logits(input.second), logits, 1e-6, "logits after qkv -> hf -> qkv");
}

TEST_F(PeftGpt2, RefusesWhatIsNotTheModelsOrNotImplementedByName) {
  auto none = [](json&) {};
  expect_refused(edited_peft(none,
                             [](NamedTensors& t) {
                               std::string m = "base_model.model.transformer.h.7.attn.c_attn";
                               t.emplace_back(m + ".lora_A.weight", Tensor::zeros({2, 32}));
                               t.emplace_back(m + ".lora_B.weight", Tensor::zeros({96, 2}));
                             }),
                 {"adapter_model.safetensors", "'transformer.h.7.attn.c_attn'"});
  expect_refused(edited_peft([](json& c) {
                   c["target_modules"] = {"c_attn", "qkv_proj"};
                 }),
                 {"adapter_config.json", "target_modules", "'qkv_proj'", "c_attn, c_fc"});
  expect_refused(edited_peft(none,
                             [](NamedTensors& t) {
                               for (auto& [k, v] : t)
                                 if (k ==
                                     "base_model.model.transformer.h.0.attn.c_attn"
                                     ".lora_B.weight")
                                   v = Tensor::zeros({64, 2});
                             }),
                 {"'transformer.h.0.attn.c_attn'", "lora_B [64, 2]", "[96, r]"});
  expect_refused(edited_peft(none,
                             [](NamedTensors& t) {
                               t.emplace_back("base_model.model.transformer.wte.lora_embedding_A",
                                              Tensor::zeros({2, 8}));
                             }),
                 {"lora_embedding_A", "is not a LoRA Linear weight"});
  expect_refused(edited_peft([](json& c) { c["use_dora"] = true; }), {"use_dora"});
  expect_refused(edited_peft([](json& c) { c["bias"] = "lora_only"; }), {"bias", "lora_only"});
  expect_refused(edited_peft([](json& c) { c["modules_to_save"] = {"lm_head"}; }),
                 {"modules_to_save"});
  expect_refused(edited_peft([](json& c) { c["lora_bias"] = true; }),
                 {"adapter_config.json", "\"lora_bias\""});
  expect_refused(edited_peft([](json& c) {
                   c["layer_replication"] = {{0, 2}};
                 }),
                 {"\"layer_replication\""});
  std::string corrupt = edited_peft(none);
  std::string bytes = read_file(corrupt + "/adapter_model.safetensors");
  write_bytes(corrupt + "/adapter_model.safetensors", bytes.substr(0, bytes.size() / 2));
  expect_refused(corrupt, {"adapter_model.safetensors"});
  std::string missing = edited_peft(none);
  fs::remove(missing + "/adapter_model.safetensors");
  expect_refused(missing, {"no adapter_model.safetensors or adapter_model.bin"});
}

TEST_F(PeftGpt2, AnAdapterOfAnotherBaseIsNamedWithBoth) {
  // A qkv adapter recorded against other weights cannot be exported with this model.
  convert::peft_adapter_from_hf(shared("peft"), shared("qkv"), dir_.file("adapter"));
  NamedTensors t = load_safetensors(dir_.file("adapter") + "/adapter_model.safetensors");
  save_safetensors(dir_.file("adapter") + "/adapter_model.safetensors", t,
                   model_dir::adapter_metadata("fnv1a64:0000000000000000"));
  expect_error<std::runtime_error>(
      [&] {
        convert::peft_adapter_to_hf(dir_.file("adapter"), shared("qkv"), "best", dir_.file("hf"),
                                    dir_.file("peft_out"));
      },
      {dir_.file("adapter"), shared("qkv"), "fnv1a64:0000000000000000"});
  EXPECT_FALSE(fs::exists(dir_.file("peft_out")));

  // A peft folder qkv exported records its base; another model refuses it.
  std::string other_hf = dir_.file("other_hf"), other = dir_.file("other");
  fs::copy(shared("hf"), other_hf);
  NamedTensors w = load_safetensors(other_hf + "/model.safetensors");
  w[0].second = Tensor::zeros(w[0].second.shape());
  save_safetensors(other_hf + "/model.safetensors", w);
  convert::gpt2_from_hf(other_hf, other);
  fs::remove_all(dir_.file("adapter"));
  convert::peft_adapter_from_hf(shared("peft"), shared("qkv"), dir_.file("adapter"));
  convert::gpt2_to_hf(shared("qkv"), dir_.file("hf2"), "best");
  convert::peft_adapter_to_hf(dir_.file("adapter"), shared("qkv"), "best", dir_.file("hf2"),
                              dir_.file("exported"));
  expect_error<std::runtime_error>(
      [&] { convert::peft_adapter_from_hf(dir_.file("exported"), other, dir_.file("o")); },
      {"adapter_model.safetensors", other, "weights fnv1a64:"});
  EXPECT_FALSE(fs::exists(dir_.file("o")));
}

}  // namespace
}  // namespace qkv::test
