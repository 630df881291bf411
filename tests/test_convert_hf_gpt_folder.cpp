// qkv convert on edited copies of Hugging Face GPT2LMHeadModel and LlamaForCausalLM folders
// (support/hf_gpt_folders.h): options qkv cannot compute are refused naming the key, special
// ids become eos-id and stop-ids with notes where they differ from the tokenizer's, missing
// files and tensors are named, and a failed conversion leaves no output.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>

#include "convert/hf_gpt2.h"
#include "convert/hf_llama.h"
#include "io/atomic_file.h"
#include "model_dir/gpt_dir.h"
#include "support/data_files.h"
#include "support/hf_gpt_folders.h"

namespace qkv::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// One folder per architecture, made once; each test edits a copy.
class HfGptFolder : public ::testing::Test {
 protected:
  static const std::string& folder(const std::string& arch) {
    static ScratchDir dir("hf_gpt_folders");
    static std::map<std::string, std::string> made;
    if (!made.count(arch)) {
      made[arch] = dir.file(arch);
      make_folder(made[arch], GptCase{arch, arch, json::object(), json::object()}, 5);
    }
    return made.at(arch);
  }
  // A fresh copy of the architecture's folder.
  std::string copy(const std::string& arch) {
    std::string to = dir_.file(arch + std::to_string(copies_++));
    fs::copy(folder(arch), to);
    return to;
  }
  static void edit_config(const std::string& hf, const std::function<void(json&)>& f) {
    json j = json::parse(std::ifstream(hf + "/config.json"));
    f(j);
    std::ofstream(hf + "/config.json") << j.dump();
  }
  // Converting arch's folder with config.json edited by f fails naming every part.
  void expect_refused(const std::string& arch, const std::function<void(json&)>& f,
                      const std::vector<std::string>& parts) {
    std::string hf = copy(arch), out = dir_.file("out");
    edit_config(hf, f);
    expect_error<std::runtime_error>([&] { from_hf(arch)(hf, out); }, parts);
    EXPECT_FALSE(fs::exists(out)) << "a failed conversion leaves its output behind";
  }
  std::string convert_edited(const std::string& arch, const std::function<void(json&)>& f) {
    std::string hf = copy(arch), out = dir_.file("out" + std::to_string(copies_));
    edit_config(hf, f);
    from_hf(arch)(hf, out);
    return out;
  }
  ScratchDir dir_{"hf_gpt_edits"};
  int copies_ = 0;
};

TEST_F(HfGptFolder, Gpt2RefusesWhatQkvCannotComputeByName) {
  expect_refused("gpt2", [](json& j) { j["scale_attn_weights"] = false; },
                 {"config.json", "\"scale_attn_weights\": false"});
  expect_refused("gpt2", [](json& j) { j["scale_attn_by_inverse_layer_idx"] = true; },
                 {"\"scale_attn_by_inverse_layer_idx\": true"});
  expect_refused("gpt2", [](json& j) { j["add_cross_attention"] = true; },
                 {"\"add_cross_attention\": true"});
  expect_refused("gpt2", [](json& j) { j["activation_function"] = "relu"; },
                 {"activation_function \"relu\""});
  expect_refused("gpt2", [](json& j) { j["architectures"] = {"GPT2DoubleHeadsModel"}; },
                 {"GPT2DoubleHeadsModel", "is not GPT2LMHeadModel"});
  // gelu_pytorch_tanh and gelu_fast are gelu_new's tanh approximation.
  for (const char* act : {"gelu_pytorch_tanh", "gelu_fast"}) {
    std::string out = convert_edited("gpt2", [&](json& j) { j["activation_function"] = act; });
    EXPECT_EQ(model_dir::read_gpt_config(out + "/config.yaml").mlp, "gelu_tanh") << act;
  }
}

TEST_F(HfGptFolder, LlamaRefusesWhatQkvCannotComputeByName) {
  expect_refused(
      "llama",
      [](json& j) {
        j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
      },
      {"config.json", "\"rope_scaling\"", "rope type dynamic", "default, linear and llama3"});
  expect_refused("llama",
                 [](json& j) {
                   j["rope_scaling"] = {{"rope_type", "llama3"},
                                        {"factor", 8.0},
                                        {"high_freq_factor", 4.0},
                                        {"original_max_position_embeddings", 8192}};
                 },
                 {"\"rope_scaling\"", "needs a number \"low_freq_factor\""});
  expect_refused(
      "llama",
      [](json& j) {
        j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}, {"attention_factor", 0.5}};
      },
      {"\"rope_scaling\"", "\"attention_factor\" is not read for rope type linear"});
  expect_refused("llama",
                 [](json& j) {
                   j["rope_scaling"] = {{"rope_type", "llama3"},
                                        {"factor", 8.0},
                                        {"low_freq_factor", 4.0},
                                        {"high_freq_factor", 1.0},
                                        {"original_max_position_embeddings", 8192}};
                 },
                 {"rope-low-freq-factor < rope-high-freq-factor"});
  expect_refused("llama", [](json& j) { j["sliding_window"] = 16; }, {"\"sliding_window\": 16"});
  expect_refused("llama", [](json& j) { j["attention_bias"] = true; },
                 {"\"mlp_bias\"", "attention_bias is true"});
  expect_refused("llama", [](json& j) { j["hidden_act"] = "gelu"; }, {"\"hidden_act\": \"gelu\""});
  expect_refused("llama", [](json& j) { j["head_dim"] = 16; }, {"\"head_dim\": 16", "= 8"});
  expect_refused("llama", [](json& j) { j["_attn_implementation"] = "paged_attention"; },
                 {"\"_attn_implementation\"", "standard attention"});
  expect_refused("llama", [](json& j) { j["attn_logit_softcapping"] = 50.0; },
                 {"\"attn_logit_softcapping\": 50.0", "does not know"});
  expect_refused("llama", [](json& j) { j["architectures"] = {"MistralForCausalLM"}; },
                 {"MistralForCausalLM", "is not LlamaForCausalLM"});
  expect_refused("llama",
                 [](json& j) {
                   j["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
                 },
                 {"\"rope_parameters\"", "yarn"});
  // Keys that change nothing, rope_scaling null, and transformers 5's rope_parameters.
  std::string out = convert_edited("llama", [](json& j) {
    j["torch_dtype"] = "bfloat16", j["transformers_version"] = "4.44.0";
    j["pretraining_tp"] = 1, j["rope_scaling"] = nullptr, j["use_cache"] = false;
    j.erase("rope_theta");
    j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 250000.0}};
  });
  EXPECT_EQ(model_dir::read_gpt_config(out + "/config.yaml").rope_theta, 250000.0);
}

// eos_token_id, an id or a list, gives the ids where generation ends, as transformers' generate
// stops: generation_config.json's where it has one, else config.json's. The tokenizer's eos is
// eos-id, the others stop-ids. Noted: a list that leaves out the tokenizer's eos (qkv stops there
// too), ids outside the vocabulary (left out), a bos_token_id other than the tokenizer's.
// Exported, both files list eos-id and the stop-ids.
TEST_F(HfGptFolder, EosTokenIdListsBecomeStopIds) {
  std::vector<std::string> notes;
  std::string out;
  auto convert = [&](const json& eos, const json& generation_eos = json()) {
    std::string hf = copy("llama");
    out = dir_.file("out" + std::to_string(copies_));
    edit_config(hf, [&](json& j) { j["eos_token_id"] = eos; });
    if (!generation_eos.is_null())
      write_bytes(hf + "/generation_config.json",
                  json{{"bos_token_id", 1}, {"eos_token_id", generation_eos}}.dump());
    notes = from_hf("llama")(hf, out);
    return model_dir::read_gpt_config(out + "/config.yaml");
  };
  nn::GptConfig one = convert(json::array({2}));
  EXPECT_EQ(notes, std::vector<std::string>{});
  EXPECT_EQ(one.eos_id, 2);
  EXPECT_EQ(one.stop_ids, std::vector<int32_t>{});
  EXPECT_TRUE(one.ends_generation(2));
  EXPECT_FALSE(one.ends_generation(7));

  nn::GptConfig llama3 = convert(json::array({7, 2, 9, 7}));  // Llama 3.1 Instruct's kind
  EXPECT_EQ(notes, std::vector<std::string>{});
  EXPECT_EQ(llama3.stop_ids, (std::vector<int32_t>{7, 9}));
  for (int32_t id : {2, 7, 9}) EXPECT_TRUE(llama3.ends_generation(id)) << id;
  EXPECT_FALSE(llama3.ends_generation(8));
  std::string exported = dir_.file("exported");
  convert::llama_to_hf(out, exported, "best");
  for (const char* file : {"/config.json", "/generation_config.json"})
    EXPECT_EQ(json::parse(read_file(exported + file))["eos_token_id"], json({2, 7, 9})) << file;

  EXPECT_EQ(convert(2, json::array({2, 5})).stop_ids, std::vector<int32_t>{5});
  EXPECT_EQ(notes, std::vector<std::string>{}) << "generation_config.json's list is the one";

  nn::GptConfig other = convert(7);
  EXPECT_EQ(other.stop_ids, std::vector<int32_t>{7});
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("eos_token_id 7 leaves out the tokenizer's 2 (\"</s>\"): qkv stops "
                          "there too"),
            std::string::npos)
      << notes[0];
  std::string hf = copy("llama");
  edit_config(hf, [&](json& j) { j["bos_token_id"] = 5; });
  notes = from_hf("llama")(hf, dir_.file("bos"));
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("bos_token_id 5 is not the tokenizer's 1 (\"<s>\"): qkv uses the "
                          "tokenizer's"),
            std::string::npos)
      << notes[0];

  EXPECT_EQ(convert(json::array({2, kSpmVocab, -1, 5})).stop_ids, std::vector<int32_t>{5});
  ASSERT_EQ(notes.size(), 2u);
  EXPECT_NE(notes[0].find("eos_token_id [2,320,-1,5] holds 320, outside the vocabulary of 320: "
                          "never generated, left out"),
            std::string::npos)
      << notes[0];
  expect_refused(
      "llama",
      [&](json& j) {
        j["eos_token_id"] = json::array({2, "</s>"});
      },
      {"config.json", "\"eos_token_id\" must be a token id or a list of them, not [2,\"</s>\"]"});
}

TEST_F(HfGptFolder, MissingFilesAndTensorsAreNamed) {
  for (const char* file : {"vocab.json", "merges.txt"}) {
    std::string hf = copy("gpt2"), out = dir_.file("out");
    fs::remove(hf + "/" + file);
    expect_error<std::runtime_error>([&] { convert::gpt2_from_hf(hf, out); }, {file});
    EXPECT_FALSE(fs::exists(out));
  }
  std::string hf = copy("llama");
  fs::remove(hf + "/tokenizer.model");
  expect_error<std::runtime_error>([&] { convert::llama_from_hf(hf, dir_.file("o1")); },
                                   {"tokenizer.model"});
  hf = copy("llama");
  fs::remove(hf + "/model.safetensors");
  expect_error<std::runtime_error>([&] { convert::llama_from_hf(hf, dir_.file("o2")); },
                                   {"no model.safetensors, pytorch_model.bin"});
  hf = copy("gpt2");
  fs::remove(hf + "/config.json");
  expect_error<std::runtime_error>([&] { convert::gpt2_from_hf(hf, dir_.file("o3")); },
                                   {"config.json"});
  hf = copy("gpt2");
  NamedTensors t = load_safetensors(hf + "/model.safetensors");
  std::erase_if(t, [](auto& p) { return p.first == "transformer.h.1.attn.c_attn.bias"; });
  t.emplace_back("transformer.h.0.attn.rotary.weight", Tensor::zeros({4}));
  save_safetensors(hf + "/model.safetensors", t);
  expect_error<std::runtime_error>([&] { convert::gpt2_from_hf(hf, dir_.file("o4")); },
                                   {"missing tensor 'transformer.h.1.attn.c_attn.bias'"});
  t.emplace_back("transformer.h.1.attn.c_attn.bias", Tensor::zeros({96}));
  save_safetensors(hf + "/model.safetensors", t);
  expect_error<std::runtime_error>([&] { convert::gpt2_from_hf(hf, dir_.file("o5")); },
                                   {"does not understand", "transformer.h.0.attn.rotary.weight"});
}

}  // namespace
}  // namespace qkv::test
