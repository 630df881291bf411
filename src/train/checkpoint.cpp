#include "train/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/atomic_file.h"
#include "model_dir/adapter_dir.h"
#include "model_dir/model_dir.h"

namespace qkv::train {

namespace fs = std::filesystem;

namespace {
const char* const kAverageFile = "average.safetensors";

nlohmann::json to_json(const Progress& p) {
  return {{"epoch", p.epoch},
          {"batch_in_epoch", p.batch_in_epoch},
          {"update", p.update},
          {"sentences", p.sentences},
          {"target_tokens", p.target_tokens},
          {"rng_seed", p.rng_seed},
          {"batches", p.batches},
          {"ranks", p.ranks},
          {"best_score", p.best_score},
          {"validations_without_improvement", p.validations_without_improvement},
          {"elapsed_s", p.elapsed_s},
          {"schedule_updates", p.schedule_updates}};
}

Progress from_json(const nlohmann::json& j) {
  Progress p;
  p.epoch = j.at("epoch");
  p.batch_in_epoch = j.at("batch_in_epoch");
  p.update = j.at("update");
  p.sentences = j.at("sentences");
  p.target_tokens = j.at("target_tokens");
  p.rng_seed = j.at("rng_seed");
  p.batches = j.value("batches", int64_t(0));  // absent before data-parallel runs
  p.ranks = j.value("ranks", int64_t(1));
  p.best_score = j.at("best_score");
  p.validations_without_improvement = j.at("validations_without_improvement");
  p.elapsed_s = j.at("elapsed_s");
  p.schedule_updates = j.value("schedule_updates", int64_t(0));  // absent before it was kept
  return p;
}

// The newest complete state's folder (checkpoint/latest's); nullopt when there is none.
std::optional<fs::path> newest_state(const std::string& model_dir) {
  fs::path root = fs::path(model_dir) / "checkpoint";
  if (!fs::exists(root / "latest")) return std::nullopt;
  std::string name = read_file((root / "latest").string());
  while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
  fs::path dir = root / name;
  if (name.empty() || !fs::exists(dir / "progress.json"))
    throw std::runtime_error((root / "latest").string() + " names '" + name +
                             "', which is not a complete checkpoint");
  return dir;
}

// Makes `dst` a complete copy of `src` under its final name in one rename.
void copy_atomic(const fs::path& src, const fs::path& dst) {
  fs::path tmp = dst.string() + ".tmp";
  fs::copy_file(src, tmp, fs::copy_options::overwrite_existing);
  fs::rename(tmp, dst);
}
}  // namespace

void save_checkpoint(const std::string& model_dir, const nn::ParamList& params,
                     const optim::Adam& adam, const Progress& progress, const WeightFiles& files,
                     const NamedTensors* average) {
  fs::path root = fs::path(model_dir) / "checkpoint";
  fs::create_directories(root);
  std::string name = "state-" + std::to_string(progress.update);
  fs::path tmp = root / (".tmp-" + name), final_dir = root / name;
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  Metadata meta = files.metadata;
  meta["update"] = std::to_string(progress.update);
  save_safetensors((tmp / "model.safetensors").string(), nn::param_tensors(params), meta);
  Metadata opt_meta = adam.state_metadata();
  opt_meta["update"] = meta["update"];
  save_safetensors((tmp / "optimizer.safetensors").string(), adam.state(), opt_meta);
  if (average) save_safetensors((tmp / kAverageFile).string(), *average, meta);
  write_file_atomic((tmp / "progress.json").string(), to_json(progress).dump(2) + "\n");
  fs::remove_all(final_dir);
  fs::rename(tmp, final_dir);
  write_file_atomic((root / "latest").string(), name + "\n");
  copy_atomic(final_dir / (average ? kAverageFile : "model.safetensors"),
              fs::path(model_dir) / files.last);
  for (const auto& entry : fs::directory_iterator(root))
    if (entry.is_directory() && entry.path().filename() != name) fs::remove_all(entry.path());
}

std::optional<Progress> load_checkpoint(const std::string& model_dir, const nn::ParamList& params,
                                        optim::Adam& adam) {
  std::optional<fs::path> newest = newest_state(model_dir);
  if (!newest) return std::nullopt;
  const fs::path& dir = *newest;
  Progress p;
  try {
    p = from_json(nlohmann::json::parse(read_file((dir / "progress.json").string())));
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error((dir / "progress.json").string() + ": " + e.what());
  }
  std::string model_path = (dir / "model.safetensors").string();
  nn::load_params(params, load_safetensors(model_path), model_path);
  std::string opt_path = (dir / "optimizer.safetensors").string();
  Metadata meta;
  NamedTensors state = load_safetensors(opt_path, &meta);
  adam.load_state(state, meta, opt_path);
  return p;
}

std::optional<NamedTensors> load_checkpoint_average(const std::string& model_dir) {
  std::optional<fs::path> state = newest_state(model_dir);
  if (!state || !fs::exists(*state / kAverageFile)) return std::nullopt;
  return load_safetensors((*state / kAverageFile).string());
}

void save_best(const std::string& model_dir, const NamedTensors& weights, const Progress& progress,
               const WeightFiles& files) {
  Metadata meta = files.metadata;
  meta["update"] = std::to_string(progress.update);
  meta["score"] = std::to_string(progress.best_score);
  save_safetensors((fs::path(model_dir) / files.best).string(), weights, meta);
}

void check_no_foreign_model(const std::string& model_dir, bool lora) {
  fs::path dir(model_dir);
  bool checkpoint = fs::exists(dir / "checkpoint" / "latest");
  for (const char* weights : {model_dir::kWeightsFile, model_dir::kAdapterWeightsFile})
    if (fs::exists(dir / weights) && !checkpoint)
      throw std::runtime_error(model_dir + " holds a " + weights +
                               " but no training checkpoint (a converted model?): training would "
                               "replace it; use another --model-dir");
  if (lora && fs::exists(dir / model_dir::kConfigFile))
    throw std::runtime_error(model_dir + " holds a model (" + model_dir::kConfigFile +
                             "): a LoRA run writes only an adapter; use another --model-dir");
  if (!lora && fs::exists(dir / model_dir::kAdapterConfigFile))
    throw std::runtime_error(model_dir + " holds a LoRA adapter (" + model_dir::kAdapterConfigFile +
                             "): resume it with its lora-rank and init-from, or use another "
                             "--model-dir");
}

}  // namespace qkv::train
