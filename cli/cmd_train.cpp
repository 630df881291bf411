// qkv train: a translation model.
#include "train/trainer.h"
#include "training_command.h"

namespace qkv::cli {

Command add_train(CLI::App& app) {
  return add_training_command<train::TrainConfig>(
      app, "train",
      "Train a translation model (resumes when --model-dir holds a checkpoint).\n"
      "Example: qkv train --config configs/tiny.yaml --model-dir runs/tiny\n"
      "Every option below can also be given as `key: value` in the YAML config.",
      [](const train::TrainConfig& c) { train::train_seq2seq(c); });
}

}  // namespace qkv::cli
