// qkv train-vit: options from --config FILE.yaml, overridden by --key value on the command line.
#include "commands.h"
#include "train/vit_trainer.h"

namespace qkv::cli {

Command add_train_vit(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "train-vit",
      "Train a ViT image classifier (resumes when --model-dir holds a checkpoint).\n"
      "Example: qkv train-vit --config configs/vit-fashion.yaml --model-dir runs/vit\n"
      "Images of another size than the model's are resized (bilinear); every option below can\n"
      "also be given as `key: value` in the YAML config.");
  struct State {
    train::ViTTrainConfig config;
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
    train::train_vit(s->config);
    return 0;
  };
}

}  // namespace qkv::cli
