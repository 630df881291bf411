// --adapter and --use-adapter: LoRA adapters applied, unmerged, to the model a command runs.
#include <iostream>

#include "commands.h"

namespace qkv::cli {

void add_adapter_options(CLI::App* cmd, AdapterArgs& args) {
  cmd->add_option("--adapter", args.specs,
                  "a LoRA adapter of the model, [NAME=]DIR (repeatable; NAME defaults to the "
                  "directory's name)")
      ->allow_extra_args(false);  // one DIR per --adapter: a command's positionals follow
  cmd->add_option("--use-adapter", args.use,
                  "the NAME of the --adapter to apply (default: the first given)");
}

model_dir::AdapterSet apply_adapters(const AdapterArgs& args, const std::string& model_dir,
                                     const std::string& checkpoint, nn::LinearList linears,
                                     const nn::ParamList& params) {
  if (args.specs.empty()) {
    if (!args.use.empty())
      throw std::invalid_argument("--use-adapter " + args.use + " needs --adapter");
    return {};
  }
  model_dir::AdapterSet set(args.specs, checkpoint, std::move(linears), model_dir, params);
  set.activate(args.use);
  const nn::LoraAdapter& active = set.adapter(set.active());
  std::cerr << "qkv: note: adapter " << active.name << " (" << set.dir(active.name) << ", "
            << active.modules.size() << " modules) applied to " << model_dir << "\n";
  return set;
}

}  // namespace qkv::cli
