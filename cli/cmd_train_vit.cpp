// qkv train-vit: a ViT image classifier.
#include "config_command.h"
#include "train/vit_trainer.h"

namespace qkv::cli {

Command add_train_vit(CLI::App& app) {
  return add_config_command<train::ViTTrainConfig>(
      app, "train-vit",
      "Train a ViT image classifier (resumes when --model-dir holds a checkpoint).\n"
      "Example: qkv train-vit --config configs/vit-fashion.yaml --model-dir runs/vit\n"
      "Images of another size than the model's are resized (bilinear); every option below can\n"
      "also be given as `key: value` in the YAML config.",
      [](const train::ViTTrainConfig& c) { train::train_vit(c); });
}

}  // namespace qkv::cli
