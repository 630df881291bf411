#include "train/fine_tune.h"

#include <cstdio>
#include <filesystem>
#include <set>
#include <stdexcept>

#include "model_dir/adapter_dir.h"
#include "train/data_parallel.h"

namespace qkv::train {

namespace fs = std::filesystem;

namespace {
// The distinct last components of the adapter's module names (q_proj, v_proj): the
// target_modules peft records.
std::vector<std::string> module_endings(const nn::LoraAdapter& adapter) {
  std::set<std::string> endings;
  for (const auto& [module, w] : adapter.modules)
    endings.insert(module.substr(module.rfind('.') + 1));
  return {endings.begin(), endings.end()};
}

// Throws when model_dir's adapter (if any) records base weights other than base_checksum.
void check_adapter_base(const std::string& model_dir, const std::string& init_from,
                        const std::string& base_checksum) {
  fs::path weights = fs::path(model_dir) / model_dir::kAdapterWeightsFile;
  if (!fs::exists(weights)) return;
  Metadata meta = read_safetensors_header(weights.string()).metadata;  // the tensors unread
  auto recorded = meta.find(model_dir::kBaseChecksumKey);
  if (recorded != meta.end() && recorded->second == base_checksum) return;
  std::string base = model_dir::is_adapter_dir(model_dir)
                         ? model_dir::read_adapter_config(model_dir).base_model
                         : std::string("(no ") + model_dir::kAdapterConfigFile + ")";
  throw std::runtime_error(
      model_dir + " holds an adapter trained on the base model " + base + " (weights " +
      (recorded != meta.end() ? recorded->second : "unrecorded") + "), not on init-from " +
      init_from + " (weights " + base_checksum + "): train into another --model-dir");
}
}  // namespace

void check_init_from(const LoopConfig& config, const std::string& model_dir,
                     model_dir::Family family) {
  model_dir::Family found = model_dir::family(config.init_from);
  if (found != family)
    throw std::runtime_error("init-from " + config.init_from + " holds a " +
                             model_dir::family_name(found) + " model, not a " +
                             model_dir::family_name(family) + " model");
  if (fs::exists(model_dir) && fs::equivalent(config.init_from, model_dir))
    throw std::runtime_error("--model-dir " + model_dir + " is init-from " + config.init_from +
                             ": train into another directory (the base model stays as it is)");
}

void note_init_from(const LoopConfig& config, TrainLog& log) {
  log.note("init-from", "starting from " + config.init_from +
                            ": its config, tokenizer and best weights (options of the model's "
                            "shape and vocabulary are ignored)");
}

WeightFiles LoraRun::files() const {
  return {model_dir::kAdapterWeightsFile, model_dir::kBestAdapterWeightsFile,
          model_dir::adapter_metadata(base_checksum)};
}

LoraRun start_lora(const LoopConfig& config, const std::string& model_dir,
                   const nn::ParamList& base, const nn::LinearList& linears,
                   const std::vector<std::string>& default_targets) {
  LoraRun run;
  run.base_checksum = nn::weights_checksum(base);
  check_adapter_base(model_dir, config.init_from, run.base_checksum);
  nn::LoraOptions options = config.lora;
  if (options.targets.empty()) options.targets = default_targets;
  Rng rng(uint64_t(config.seed));
  run.adapter = nn::new_lora_adapter(linears, options, rng);
  nn::freeze(base);
  nn::attach_lora(linears, run.adapter);
  return run;
}

void publish_lora(const LoopConfig& config, const std::string& model_dir, const LoraRun& run,
                  const std::string& task_type, int64_t base_parameters, TrainLog& log) {
  model_dir::AdapterConfig c;
  c.options = config.lora;
  c.options.targets = module_endings(run.adapter);
  c.base_model = fs::absolute(config.init_from).lexically_normal().string();
  while (c.base_model.size() > 1 && c.base_model.back() == '/') c.base_model.pop_back();
  c.task_type = task_type;
  if (Ranks::root()) model_dir::write_adapter_config(model_dir, c);

  int64_t trainable = run.adapter.parameter_count(), all = base_parameters + trainable;
  char share[32];
  std::snprintf(share, sizeof share, "%.2f%%", 100.0 * double(trainable) / double(all));
  log.note("lora", "LoRA rank " + std::to_string(config.lora.rank) + " on " +
                       std::to_string(run.adapter.modules.size()) +
                       " modules: " + std::to_string(trainable) + " trainable parameters of " +
                       std::to_string(all) + " (" + share + ")");
}

}  // namespace qkv::train
