// The `qkv` subcommands. Each cli/cmd_*.cpp adds one subcommand to the app and returns a
// callback that runs it (exit code). Errors a user can cause are thrown as std::exception with
// a message that names the file or option; main() prints "qkv: <message>" and exits 1.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>

#include "decode/search.h"
#include "model_dir/adapter_set.h"
#include "ops/compute_type.h"

namespace qkv::cli {

using Command = std::function<int()>;

Command add_inspect(CLI::App& app);
Command add_train(CLI::App& app);
Command add_translate(CLI::App& app);
Command add_score(CLI::App& app);
Command add_eval(CLI::App& app);
Command add_train_vit(CLI::App& app);
Command add_train_lm(CLI::App& app);
Command add_generate(CLI::App& app);
Command add_classify(CLI::App& app);
Command add_convert(CLI::App& app);
Command add_merge_lora(CLI::App& app);
Command add_quantize(CLI::App& app);
Command add_serve(CLI::App& app);
Command add_distill(CLI::App& app);

// --beam, --n-best, --length-penalty, ... shared by translate and eval.
void add_search_options(CLI::App* cmd, decode::SearchOptions& options);
// --device cpu|cuda for the commands that run a model (train and train-vit take `device` from
// their configs instead).
void add_device_option(CLI::App* cmd, std::string& device);

// --adapter [NAME=]DIR (repeatable) and --use-adapter NAME for the commands that run a model.
struct AdapterArgs {
  std::vector<std::string> specs;
  std::string use;  // "": the first
};
void add_adapter_options(CLI::App* cmd, AdapterArgs& args);
// Loads args' adapters for the model of model_dir (its `checkpoint` weights, whose hidden
// linears are `linears` and parameters `params`; the adapters' own weights are `checkpoint`'s
// too), attaches the one --use-adapter names and notes it on stderr. Without --adapter: an
// empty set and the model as it is.
model_dir::AdapterSet apply_adapters(const AdapterArgs& args, const std::string& model_dir,
                                     const std::string& checkpoint, nn::LinearList linears,
                                     const nn::ParamList& params);

// --compute-type f32|bf16|int8 for the commands that run a model ("" when not given).
void add_compute_type_option(CLI::App* cmd, std::string& compute_type);
// model_dir::apply_compute_type for --compute-type `name`, with a warning where the type runs
// no faster than f32 (portable kernels; bf16). Call after apply_adapters.
ops::ComputeType apply_compute_type(const std::string& name, const std::string& model_dir,
                                    const std::string& checkpoint, Device device,
                                    const nn::LinearList& linears);

}  // namespace qkv::cli
