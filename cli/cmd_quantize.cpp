// qkv quantize: a model directory with its weights stored as int8 (model_dir/quantized_weights.h),
// about 4x smaller, that every command loads (and runs in int8 unless told otherwise).
#include <filesystem>
#include <iostream>
#include <random>

#include "commands.h"
#include "model_dir/model_dir.h"
#include "model_dir/quantized_weights.h"

namespace qkv::cli {

namespace fs = std::filesystem;

namespace {
// Everything of the model directory `from` but its weights and training checkpoint, into `to`.
void copy_model_files(const fs::path& from, const fs::path& to) {
  for (const fs::directory_entry& e : fs::directory_iterator(from)) {
    std::string name = e.path().filename().string();
    if (name == "checkpoint" || name == model_dir::kWeightsFile ||
        name == model_dir::kBestWeightsFile)
      continue;
    fs::copy(e.path(), to / name, fs::copy_options::recursive);
  }
}
}  // namespace

Command add_quantize(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "quantize",
      "Write a copy of a model directory whose weights are int8 (every linear and embedding "
      "matrix, one scale per row; norms and biases stay f32): about 4x smaller. Every command "
      "loads it, and runs it with --compute-type int8 unless given another.");
  struct Args {
    std::string model_dir, to, checkpoint = "best", type = "int8";
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--model-dir", a->model_dir, "a model directory")->required();
  cmd->add_option("--to", a->to, "the new directory (must not exist)")->required();
  cmd->add_option("--checkpoint", a->checkpoint, "the weights to quantize: best or last");
  cmd->add_option("--type", a->type, "the stored type")->check(CLI::IsMember({"int8"}));
  return [a]() {
    model_dir::family(a->model_dir);  // a model directory, or the error that says why not
    std::string weights = model_dir::weights_path(a->model_dir, a->checkpoint);
    if (model_dir::holds_int8(weights)) throw std::invalid_argument(weights + " is int8 already");
    if (fs::exists(a->to)) throw std::invalid_argument("--to " + a->to + " exists already");
    // Built beside its destination, then renamed: an interrupted run leaves no half directory.
    fs::path target = fs::absolute(a->to);
    fs::path staging = target;
    staging += ".partial-" + std::to_string(std::random_device{}());
    fs::create_directories(staging);
    try {
      copy_model_files(a->model_dir, staging);
      Metadata metadata;
      NamedTensors tensors = load_safetensors(weights, &metadata);
      metadata["quantization"] = a->type;
      save_safetensors((staging / model_dir::kWeightsFile).string(),
                       model_dir::quantize_weights(tensors), metadata);
      fs::rename(staging, target);
    } catch (...) {
      fs::remove_all(staging);
      throw;
    }
    auto mb = [](const fs::path& p) { return double(fs::file_size(p)) / 1e6; };
    std::fprintf(stderr, "qkv: %s: %.1f MB -> %s: %.1f MB\n", weights.c_str(), mb(weights),
                 (target / model_dir::kWeightsFile).c_str(), mb(target / model_dir::kWeightsFile));
    return 0;
  };
}

}  // namespace qkv::cli
