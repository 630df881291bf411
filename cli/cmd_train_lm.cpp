// qkv train-lm: a decoder-only (GPT) language model.
#include "config_command.h"
#include "train/lm_trainer.h"

namespace qkv::cli {

Command add_train_lm(CLI::App& app) {
  return add_config_command<train::LmTrainConfig>(
      app, "train-lm",
      "Train a GPT-style language model on text (resumes when --model-dir holds a checkpoint).\n"
      "Example: qkv train-lm --config configs/gpt-bible.yaml --model-dir runs/gpt\n"
      "Every option below can also be given as `key: value` in the YAML config; model shape\n"
      "options left at -1 (or empty) take the preset's.",
      [](const train::LmTrainConfig& c) { train::train_lm(c); });
}

}  // namespace qkv::cli
