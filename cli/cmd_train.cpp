// qkv train: a translation model.
#include "config_command.h"
#include "train/trainer.h"

namespace qkv::cli {

Command add_train(CLI::App& app) {
  return add_config_command<train::TrainConfig>(
      app, "train",
      "Train a translation model (resumes when --model-dir holds a checkpoint).\n"
      "Example: qkv train --config configs/tiny.yaml --model-dir runs/tiny\n"
      "Every option below can also be given as `key: value` in the YAML config.",
      [](const train::TrainConfig& c) { train::train_seq2seq(c); });
}

}  // namespace qkv::cli
