#include "model_dir/adapter_dir.h"

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>

#include "io/atomic_file.h"
#include "model_dir/model_dir.h"

namespace qkv::model_dir {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

namespace {
// The value of the first pattern key that matches `module` as peft matches them.
template <class T>
const T* pattern_value(const std::vector<std::pair<std::string, T>>& patterns,
                       const std::string& module) {
  for (const auto& [key, value] : patterns)
    if (std::regex_match(module, std::regex("(.*\\.)?(" + key + ")"))) return &value;
  return nullptr;
}

// target_modules as peft reads them: the module names, or the string "all-linear" (peft takes
// a list's items as names).
ordered_json target_modules(const std::vector<std::string>& targets) {
  std::vector<std::string> names = nn::split_lora_targets(targets);
  for (const auto& n : names)
    if (n == "all-linear") return n;
  return names;
}

ordered_json number(double x) {
  return x == std::floor(x) && std::abs(x) < 1e15 ? ordered_json(int64_t(x)) : ordered_json(x);
}

// A rank_pattern or alpha_pattern of `j` in the file's order, which decides between keys that
// match the same module.
template <class T>
std::vector<std::pair<std::string, T>> read_pattern(const ordered_json& j, const char* key) {
  std::vector<std::pair<std::string, T>> pattern;
  if (!j.contains(key) || j[key].is_null()) return pattern;
  if (!j[key].is_object())
    throw std::runtime_error(std::string(key) + " must be a JSON object, not " + j[key].dump());
  for (const auto& [k, v] : j[key].items()) pattern.emplace_back(k, v.template get<T>());
  return pattern;
}
}  // namespace

int64_t AdapterConfig::rank(const std::string& module) const {
  const int64_t* r = pattern_value(rank_pattern, module);
  return r ? *r : options.rank;
}

float AdapterConfig::scaling(const std::string& module, int64_t r) const {
  const double* a = pattern_value(alpha_pattern, module);
  double alpha = a ? *a : options.alpha_or_rank();
  return float(options.rslora ? alpha / std::sqrt(double(r)) : alpha / double(r));
}

bool is_adapter_dir(const std::string& dir) {
  return fs::exists(fs::path(dir) / kAdapterConfigFile);
}

void write_adapter_config(const std::string& dir, const AdapterConfig& c) {
  ordered_json rank_pattern = ordered_json::object(), alpha_pattern = ordered_json::object();
  for (const auto& [k, v] : c.rank_pattern) rank_pattern[k] = v;
  for (const auto& [k, v] : c.alpha_pattern) alpha_pattern[k] = number(v);
  ordered_json j = {
      {"peft_type", "LORA"},
      {"task_type", c.task_type.empty() ? ordered_json(nullptr) : ordered_json(c.task_type)},
      {"base_model_name_or_path", c.base_model},
      {"revision", nullptr},
      {"r", c.options.rank},
      {"lora_alpha", number(c.options.alpha_or_rank())},
      {"lora_dropout", c.options.dropout},
      {"target_modules", target_modules(c.options.targets)},
      {"use_rslora", c.options.rslora},
      {"rank_pattern", rank_pattern},
      {"alpha_pattern", alpha_pattern},
      {"bias", "none"},
      {"fan_in_fan_out", false},
      {"inference_mode", true},
      {"init_lora_weights", true},
      {"modules_to_save", nullptr},
      {"layers_to_transform", nullptr},
      {"layers_pattern", nullptr},
      {"use_dora", false}};
  write_file_atomic((fs::path(dir) / kAdapterConfigFile).string(), j.dump(2) + "\n");
}

AdapterConfig read_adapter_config(const std::string& dir) {
  std::string path = (fs::path(dir) / kAdapterConfigFile).string();
  if (!fs::is_directory(dir)) throw std::runtime_error(dir + ": no such adapter directory");
  if (!fs::exists(path))
    throw std::runtime_error(dir + ": not a LoRA adapter directory (no " + kAdapterConfigFile +
                             ")");
  AdapterConfig c;
  try {
    ordered_json j = ordered_json::parse(read_file(path));
    if (!j.is_object()) throw std::runtime_error("not a JSON object");
    auto get = [&](const char* key, auto fallback) {
      return j.contains(key) && !j[key].is_null() ? j[key].get<decltype(fallback)>() : fallback;
    };
    std::string type = get("peft_type", std::string("LORA"));
    if (type != "LORA") throw std::runtime_error("peft_type is " + type + ", qkv reads LORA");
    if (get("use_dora", false)) throw std::runtime_error("use_dora: DoRA is not implemented");
    if (get("bias", std::string("none")) != "none")
      throw std::runtime_error("bias is '" + j["bias"].get<std::string>() +
                               "': adapters that train biases are not implemented");
    if (j.contains("modules_to_save") && !j["modules_to_save"].is_null() &&
        !j["modules_to_save"].empty())
      throw std::runtime_error("modules_to_save " + j["modules_to_save"].dump() +
                               ": adapters that replace whole modules are not implemented");
    if (!j.contains("r")) throw std::runtime_error("missing \"r\"");
    c.options.rank = j["r"].get<int64_t>();
    c.options.alpha = get("lora_alpha", double(c.options.rank));
    c.options.dropout = get("lora_dropout", 0.f);
    c.options.rslora = get("use_rslora", false);
    if (j.contains("target_modules") && j["target_modules"].is_array())
      c.options.targets = j["target_modules"].get<std::vector<std::string>>();
    else if (j.contains("target_modules") && j["target_modules"].is_string())
      c.options.targets = {j["target_modules"].get<std::string>()};
    c.base_model = get("base_model_name_or_path", std::string());
    c.task_type = get("task_type", std::string());
    c.rank_pattern = read_pattern<int64_t>(j, "rank_pattern");
    c.alpha_pattern = read_pattern<double>(j, "alpha_pattern");
    if (c.options.rank <= 0) throw std::runtime_error("r must be positive");
    c.options.check();
  } catch (const ordered_json::exception& e) {
    throw std::runtime_error(path + ": " + e.what());
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
  return c;
}

std::string adapter_weights_path(const std::string& dir, const std::string& which) {
  check_which(which);
  fs::path best = fs::path(dir) / kBestAdapterWeightsFile,
           last = fs::path(dir) / kAdapterWeightsFile;
  if (which == "best" && fs::exists(best)) return best.string();
  if (!fs::exists(last))
    throw std::runtime_error(dir + ": no " + kAdapterWeightsFile +
                             " (has training written a checkpoint?)");
  return last.string();
}

Metadata adapter_metadata(const std::string& base_checksum) {
  return {{"format", "pt"}, {kBaseChecksumKey, base_checksum}};
}

nn::LoraAdapter load_adapter(const std::string& dir, const std::string& which,
                             const nn::LinearList& linears, const std::string& base_dir,
                             const std::string& base_checksum) {
  AdapterConfig config = read_adapter_config(dir);
  std::string path = adapter_weights_path(dir, which);
  Metadata meta;
  NamedTensors tensors = load_safetensors(path, &meta);
  auto recorded = meta.find(kBaseChecksumKey);
  if (recorded != meta.end() && recorded->second != base_checksum)
    throw std::runtime_error("adapter " + dir + " was trained on the base model '" +
                             config.base_model + "' (weights " + recorded->second + "), not on " +
                             base_dir + " (weights " + base_checksum + ")");
  nn::LoraAdapter adapter = nn::lora_adapter_from_tensors(
      tensors, linears,
      [&](const std::string& module, int64_t r) { return config.scaling(module, r); }, path);
  for (auto& [module, w] : adapter.modules) {
    if (w.a.shape()[0] != config.rank(module))
      throw std::runtime_error(path + ": module '" + module + "' has rank " +
                               std::to_string(w.a.shape()[0]) + ", but " + kAdapterConfigFile +
                               " gives it " + std::to_string(config.rank(module)) +
                               " (r or rank_pattern)");
    w.dropout = config.options.dropout;
  }
  std::string normal = fs::path(dir).lexically_normal().string();
  while (normal.size() > 1 && normal.back() == '/') normal.pop_back();
  adapter.name = fs::path(normal).filename().string();
  return adapter;
}

void save_adapter(const std::string& dir, const AdapterConfig& config,
                  const nn::LoraAdapter& adapter, const std::string& base_checksum) {
  fs::create_directories(dir);
  write_adapter_config(dir, config);
  save_safetensors((fs::path(dir) / kAdapterWeightsFile).string(),
                   nn::param_tensors(adapter.params()), adapter_metadata(base_checksum));
}

}  // namespace qkv::model_dir
