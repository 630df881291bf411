// Adapter directories (model_dir/adapter_dir.h) in peft's files: an adapter saved and loaded
// keeps every tensor bit for bit under peft's keys, with the adapter_config.json fields peft
// reads; alpha_pattern and rank_pattern apply to the modules peft applies them to; and each
// kind of bad input (a corrupt or truncated file, keys or modules that do not fit the model,
// options qkv does not implement, an adapter of another base) is an error naming the file and
// what is wrong, and touches no file.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "model_dir/adapter_dir.h"
#include "nn/gpt.h"
#include "support/data_files.h"
#include "support/torch_ref.h"

namespace qkv::test {
namespace {

namespace fs = std::filesystem;
using model_dir::AdapterConfig;
using nlohmann::json;

nn::Gpt small_llama() {
  nn::GptConfig c = nn::GptConfig::preset("llama-tiny");
  c.vocab_size = 37, c.context_length = 16, c.d_model = 32, c.layers = 2, c.heads = 4;
  c.kv_heads = 2, c.d_ff = 48;
  nn::Gpt model(c);
  Rng rng(1);
  model.init(rng);
  return model;
}

// An adapter of rank 4 on every q_proj and v_proj, with a random B.
nn::LoraAdapter trained_adapter(const nn::LinearList& linears) {
  Rng rng(2);
  nn::LoraAdapter adapter =
      nn::new_lora_adapter(linears, {4, 8, 0.05f, {"q_proj,v_proj"}, false}, rng);
  for (auto& [module, w] : adapter.modules) w.b.mutable_value().copy_from(randn(w.b.shape(), rng));
  return adapter;
}

AdapterConfig config_of(const nn::LoraOptions& options) {
  AdapterConfig c;
  c.options = options;
  c.base_model = "/models/base";
  c.task_type = "CAUSAL_LM";
  return c;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Every file under dir with its bytes.
std::map<std::string, std::string> contents(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out[e.path().string()] = read_text(e.path().string());
  return out;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.to_vector() == b.to_vector();
}

TEST(AdapterDir, SavedAdapterHasPeftsFilesAndLoadsBitForBit) {
  nn::Gpt model = small_llama();
  nn::LinearList linears = model.linears();
  nn::LoraAdapter adapter = trained_adapter(linears);
  std::string checksum = nn::weights_checksum(model.params());
  ScratchDir scratch("adapter_roundtrip");
  std::string dir = scratch.file("my-adapter");
  model_dir::save_adapter(dir, config_of({4, 8, 0.05f, {"q_proj,v_proj"}, false}), adapter,
                          checksum);

  json j = json::parse(read_text(dir + "/adapter_config.json"));
  EXPECT_EQ(j["peft_type"], "LORA");
  EXPECT_EQ(j["task_type"], "CAUSAL_LM");
  EXPECT_EQ(j["r"], 4);
  EXPECT_EQ(j["lora_alpha"], 8);
  EXPECT_FLOAT_EQ(j["lora_dropout"].get<float>(), 0.05f);
  EXPECT_EQ(j["target_modules"], json({"q_proj", "v_proj"}));  // one name per item
  EXPECT_EQ(j["use_rslora"], false);
  EXPECT_EQ(j["base_model_name_or_path"], "/models/base");
  EXPECT_EQ(j["bias"], "none");
  EXPECT_EQ(j["use_dora"], false);
  EXPECT_EQ(j["fan_in_fan_out"], false);
  EXPECT_TRUE(j["modules_to_save"].is_null());
  EXPECT_EQ(j["rank_pattern"], json::object());
  EXPECT_EQ(j["alpha_pattern"], json::object());

  Metadata meta;
  NamedTensors saved = load_safetensors(dir + "/adapter_model.safetensors", &meta);
  std::set<std::string> keys;
  for (const auto& [key, t] : saved) keys.insert(key);
  std::set<std::string> want;
  for (int layer : {0, 1})
    for (const char* proj : {"q_proj", "v_proj"})
      for (const char* ab : {"A", "B"})
        want.insert("base_model.model.model.layers." + std::to_string(layer) + ".self_attn." +
                    proj + ".lora_" + ab + ".weight");
  EXPECT_EQ(keys, want);
  EXPECT_EQ(meta["format"], "pt");
  EXPECT_EQ(meta[model_dir::kBaseChecksumKey], checksum);

  AdapterConfig read = model_dir::read_adapter_config(dir);
  EXPECT_EQ(read.options.rank, 4);
  EXPECT_EQ(read.options.alpha, 8);
  EXPECT_FLOAT_EQ(read.options.dropout, 0.05f);
  EXPECT_EQ(read.options.targets, (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_EQ(read.base_model, "/models/base");

  nn::LoraAdapter loaded = model_dir::load_adapter(dir + "/", "best", linears, "base", checksum);
  EXPECT_EQ(loaded.name, "my-adapter");
  ASSERT_EQ(loaded.modules.size(), adapter.modules.size());
  for (const auto& [module, w] : adapter.modules) {
    ASSERT_TRUE(loaded.modules.count(module)) << module;
    const nn::LoraWeights& l = loaded.modules.at(module);
    EXPECT_TRUE(same_bits(l.a.value(), w.a.value())) << module;
    EXPECT_TRUE(same_bits(l.b.value(), w.b.value())) << module;
    EXPECT_FLOAT_EQ(l.scaling, 2.f) << module;
    EXPECT_FLOAT_EQ(l.dropout, 0.05f) << module;
  }
}

TEST(AdapterDir, AllLinearIsWrittenAsPeftsString) {
  nn::Gpt model = small_llama();
  nn::LinearList linears = model.linears();
  Rng rng(3);
  nn::LoraOptions options{2, 0, 0.f, {"all-linear"}, true};
  ScratchDir scratch("adapter_all_linear");
  model_dir::save_adapter(scratch.file("a"), config_of(options),
                          nn::new_lora_adapter(linears, options, rng), "x");
  json j = json::parse(read_text(scratch.file("a/adapter_config.json")));
  EXPECT_EQ(j["target_modules"], "all-linear");
  EXPECT_EQ(j["use_rslora"], true);
  EXPECT_EQ(j["lora_alpha"], 2);  // alpha 0 means r
  EXPECT_EQ(model_dir::read_adapter_config(scratch.file("a")).options.targets,
            std::vector<std::string>{"all-linear"});
}

// An adapter directory holding `config` and `tensors` as peft would write them.
std::string write_adapter(const ScratchDir& scratch, const std::string& name, const json& config,
                          const NamedTensors& tensors, const Metadata& meta = {{"format", "pt"}}) {
  std::string dir = scratch.file(name);
  fs::create_directories(dir);
  std::ofstream(dir + "/adapter_config.json") << config.dump();
  save_safetensors(dir + "/adapter_model.safetensors", tensors, meta);
  return dir;
}

json peft_config(int64_t r, double alpha) {
  return {{"peft_type", "LORA"},
          {"r", r},
          {"lora_alpha", alpha},
          {"lora_dropout", 0.0},
          {"bias", "none"},
          {"target_modules", {"q_proj", "v_proj"}},
          {"use_rslora", false},
          {"use_dora", false},
          {"modules_to_save", nullptr}};
}

std::string q_key(int layer, char which) {
  return nn::lora_key("model.layers." + std::to_string(layer) + ".self_attn.q_proj", which);
}
std::string v_key(int layer, char which) {
  return nn::lora_key("model.layers." + std::to_string(layer) + ".self_attn.v_proj", which);
}

// A and B of rank r for the small Llama's q_proj ([32, 32]) and v_proj ([16, 32]) of both layers.
NamedTensors peft_tensors(int64_t q_rank, int64_t v_rank) {
  Rng rng(4);
  NamedTensors out;
  for (int layer : {0, 1}) {
    out.emplace_back(q_key(layer, 'A'), randn({q_rank, 32}, rng));
    out.emplace_back(q_key(layer, 'B'), randn({32, q_rank}, rng));
    out.emplace_back(v_key(layer, 'A'), randn({v_rank, 32}, rng));
    out.emplace_back(v_key(layer, 'B'), randn({16, v_rank}, rng));
  }
  return out;
}

TEST(AdapterDir, RankAndAlphaPatternsApplyAsPeftMatchesThem) {
  nn::Gpt model = small_llama();
  nn::LinearList linears = model.linears();
  ScratchDir scratch("adapter_patterns");
  for (bool rslora : {false, true}) {
    json config = peft_config(4, 8);
    config["use_rslora"] = rslora;
    config["rank_pattern"] = {{"v_proj", 2}};
    config["alpha_pattern"] = {{"layers\\.1\\.self_attn\\.q_proj", 3}};  // a regular expression
    std::string dir = write_adapter(scratch, rslora ? "rs" : "plain", config, peft_tensors(4, 2));
    nn::LoraAdapter a = model_dir::load_adapter(dir, "last", linears, "base", "any");
    auto scale = [&](double alpha, double r) { return float(alpha / (rslora ? std::sqrt(r) : r)); };
    EXPECT_FLOAT_EQ(a.modules.at("model.layers.0.self_attn.q_proj").scaling, scale(8, 4));
    EXPECT_FLOAT_EQ(a.modules.at("model.layers.1.self_attn.q_proj").scaling, scale(3, 4));
    EXPECT_FLOAT_EQ(a.modules.at("model.layers.0.self_attn.v_proj").scaling, scale(8, 2));
    EXPECT_FLOAT_EQ(a.modules.at("model.layers.1.self_attn.v_proj").scaling, scale(8, 2));
  }
  // A pattern key matches a whole name or a name ending after a dot, never part of a word.
  json config = peft_config(4, 8);
  config["alpha_pattern"] = {{"proj", 1}};
  std::string dir = write_adapter(scratch, "partial", config, peft_tensors(4, 4));
  nn::LoraAdapter a = model_dir::load_adapter(dir, "last", linears, "base", "any");
  EXPECT_FLOAT_EQ(a.modules.at("model.layers.0.self_attn.q_proj").scaling, 2.f);
  // Where several keys match a module, the first in the file wins, as in peft (sorted, the
  // layer's key would come first both times).
  for (bool layer_first : {false, true}) {
    nlohmann::ordered_json ordered = nlohmann::ordered_json::parse(peft_config(4, 8).dump());
    auto& pattern = ordered["alpha_pattern"] = nlohmann::ordered_json::object();
    if (layer_first) pattern["layers\\.0\\.self_attn\\.q_proj"] = 3;
    pattern["q_proj"] = 1;
    pattern["layers\\.0\\.self_attn\\.q_proj"] = 3;
    dir = write_adapter(scratch, layer_first ? "layer_first" : "q_proj_first", config,
                        peft_tensors(4, 4));
    write_bytes(dir + "/" + model_dir::kAdapterConfigFile, ordered.dump());
    a = model_dir::load_adapter(dir, "last", linears, "base", "any");
    EXPECT_FLOAT_EQ(a.modules.at("model.layers.0.self_attn.q_proj").scaling,
                    layer_first ? 0.75f : 0.25f);
    EXPECT_FLOAT_EQ(a.modules.at("model.layers.1.self_attn.q_proj").scaling, 0.25f);
  }
}

// Each bad adapter is an error naming what is wrong, and the load touches neither directory.
class AdapterDirErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(scratch_.file("base"));
    save_safetensors(scratch_.file("base/model.safetensors"), nn::param_tensors(model_.params()));
  }
  std::string write(const json& config, const NamedTensors& tensors,
                    const Metadata& meta = {{"format", "pt"}}) {
    return write_adapter(scratch_, "adapter" + std::to_string(++count_), config, tensors, meta);
  }
  void expect_load_error(const std::string& dir, const std::vector<std::string>& parts) {
    std::string base = scratch_.file("base");
    auto before = contents(dir), base_before = contents(base);
    expect_error<std::runtime_error>(
        [&] { model_dir::load_adapter(dir, "last", linears_, base, checksum_); }, parts);
    EXPECT_EQ(contents(dir), before) << dir;
    EXPECT_EQ(contents(base), base_before) << base;
  }

  nn::Gpt model_ = small_llama();
  nn::LinearList linears_ = model_.linears();
  std::string checksum_ = nn::weights_checksum(model_.params());
  ScratchDir scratch_{"adapter_errors"};
  int count_ = 0;
};

TEST_F(AdapterDirErrors, CorruptOrTruncatedWeights) {
  for (size_t keep : {size_t(0), size_t(20), size_t(400)}) {
    std::string dir = write(peft_config(4, 8), peft_tensors(4, 4));
    std::string path = dir + "/adapter_model.safetensors";
    std::string bytes = read_text(path);
    ASSERT_GT(bytes.size(), keep + 100);
    write_bytes(path, bytes.substr(0, keep));
    expect_load_error(dir, {path});
  }
  std::string dir = write(peft_config(4, 8), peft_tensors(4, 4));
  std::string path = dir + "/adapter_model.safetensors";
  std::string bytes = read_text(path);
  write_bytes(path, std::string(8, '\xff') + bytes.substr(8));  // a header longer than the file
  expect_load_error(dir, {path, "not a valid safetensors file"});
  fs::remove(path);
  expect_load_error(dir, {"adapter_model.safetensors"});
}

TEST_F(AdapterDirErrors, KeysModulesAndShapesThatDoNotFit) {
  std::string not_peft = "model.layers.0.self_attn.q_proj.lora_A.weight";
  std::string named_adapter =
      "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight";
  for (const std::string& key : {not_peft, named_adapter}) {
    NamedTensors t = peft_tensors(4, 4);
    t[0].first = key;
    expect_load_error(write(peft_config(4, 8), t), {"adapter_model.safetensors", "'" + key + "'"});
  }
  for (std::string module : {"model.layers.5.self_attn.q_proj", "lm_head", "model.layers.0.mlp"}) {
    NamedTensors t = peft_tensors(4, 4);
    t.emplace_back(nn::lora_key(module, 'A'), Tensor::zeros({4, 32}));
    t.emplace_back(nn::lora_key(module, 'B'), Tensor::zeros({32, 4}));
    expect_load_error(write(peft_config(4, 8), t), {"'" + module + "'", "not a linear layer"});
  }
  NamedTensors without_b = peft_tensors(4, 4);
  without_b.erase(without_b.begin() + 1);  // layer 0's q_proj B
  expect_load_error(write(peft_config(4, 8), without_b),
                    {"'model.layers.0.self_attn.q_proj'", "lacks its lora_B"});
  NamedTensors wide_a = peft_tensors(4, 4);
  wide_a[2].second = Tensor::zeros({4, 31});  // layer 0's v_proj A
  expect_load_error(write(peft_config(4, 8), wide_a),
                    {"'model.layers.0.self_attn.v_proj'", "[4, 31]", "[16, 32]"});
  NamedTensors transposed_b = peft_tensors(4, 4);
  transposed_b[3].second = Tensor::zeros({4, 16});  // layer 0's v_proj B
  expect_load_error(write(peft_config(4, 8), transposed_b),
                    {"'model.layers.0.self_attn.v_proj'", "[4, 16]"});
  expect_load_error(write(peft_config(8, 8), peft_tensors(4, 4)),
                    {"'model.layers.0.self_attn.q_proj'", "rank 4", "gives it 8"});
}

TEST_F(AdapterDirErrors, PeftOptionsQkvDoesNotImplement) {
  std::vector<std::pair<json, std::vector<std::string>>> cases = {
      {{{"use_dora", true}}, {"use_dora", "DoRA"}},
      {{{"bias", "all"}}, {"bias", "'all'"}},
      {{{"bias", "lora_only"}}, {"bias", "'lora_only'"}},
      {{{"modules_to_save", {"lm_head"}}}, {"modules_to_save", "lm_head"}},
      {{{"peft_type", "IA3"}}, {"peft_type is IA3"}},
      {{{"r", 0}}, {"r must be positive"}},
      {{{"r", "four"}}, {"adapter_config.json"}},
      {{{"lora_dropout", 1.5}}, {"lora-dropout"}}};
  for (const auto& [change, parts] : cases) {
    json config = peft_config(4, 8);
    config.update(change);
    std::string dir = write(config, peft_tensors(4, 4));
    std::vector<std::string> want = parts;
    want.push_back(dir + "/adapter_config.json");
    expect_load_error(dir, want);
  }
  json no_r = peft_config(4, 8);
  no_r.erase("r");
  expect_load_error(write(no_r, peft_tensors(4, 4)), {"adapter_config.json", "missing \"r\""});
  std::string dir = write(peft_config(4, 8), peft_tensors(4, 4));
  write_bytes(dir + "/adapter_config.json", "{\"r\": 4,");
  expect_load_error(dir, {dir + "/adapter_config.json"});
  fs::remove(dir + "/adapter_config.json");
  expect_load_error(dir, {dir, "not a LoRA adapter directory"});
}

TEST_F(AdapterDirErrors, AnAdapterOfAnotherBaseNamesBothDirectories) {
  json config = peft_config(4, 8);
  config["base_model_name_or_path"] = "/models/other-base";
  std::string dir =
      write(config, peft_tensors(4, 4), model_dir::adapter_metadata("fnv1a64:0123456789abcdef"));
  expect_load_error(dir, {dir, "/models/other-base", scratch_.file("base"), checksum_,
                          "fnv1a64:0123456789abcdef"});
  // The same adapter recorded for this base loads.
  std::string good = write(config, peft_tensors(4, 4), model_dir::adapter_metadata(checksum_));
  EXPECT_EQ(model_dir::load_adapter(good, "last", linears_, "base", checksum_).modules.size(), 4u);
}

}  // namespace
}  // namespace qkv::test
