// qkv train: options from --config FILE.yaml, overridden by --key value on the command line.
#include "commands.h"
#include "train/trainer.h"

namespace qkv::cli {

Command add_train(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "train",
      "Train a translation model (resumes when --model-dir holds a checkpoint).\n"
      "Example: qkv train --config configs/tiny.yaml --model-dir runs/tiny\n"
      "Every option below can also be given as `key: value` in the YAML config.");
  struct State {
    train::TrainConfig config;
    Options options;
    std::string config_file;
  };
  auto s = std::make_shared<State>();
  cmd->add_option("--config", s->config_file, "YAML file of options (keys as the flags below)");
  s->config.bind(s->options);
  s->options.add_to_cli(*cmd);
  return [s]() {
    if (!s->config_file.empty()) s->options.load_yaml(s->config_file);
    s->options.apply_cli();
    train::train_seq2seq(s->config);
    return 0;
  };
}

}  // namespace qkv::cli
