// Every option of `qkv train-vit`: the image data, the ViT shape (a preset, then overrides),
// batches and augmentation, and the shared optimisation/stopping/reporting options of
// LoopConfig — the same kebab-case keys on the command line and in YAML config files.
#pragma once
#include <string>

#include "config/options.h"
#include "data/image_set.h"
#include "nn/vit.h"
#include "train/loop.h"

namespace qkv::train {

struct ViTTrainConfig : LoopConfig {
  std::string model_dir;
  std::string train_set = "fashion-mnist:train", valid_set;
  int64_t valid_split = 5000;  // held out of train-set when no valid-set is given
  // Model shape: a preset, then the options of nn::ViTConfig::bind_shape (the keys of a model
  // directory's config.yaml) held in `model`; they start at 0, which takes the preset's.
  std::string preset = "vit-fashion";
  nn::ViTConfig model;
  // Batches and augmentation.
  int64_t batch_size = 128;
  int64_t crop_padding = 2;
  bool horizontal_flip = true;
  std::string config;  // the YAML file these came from, if any

  // The ViT defaults of the LoopConfig fields (AdamW, cosine, ...); `model`'s shape unset.
  ViTTrainConfig();
  void bind(Options& options);
  void validate() const;
  // The model shape asked for (preset + overrides), without classes and normalisation.
  nn::ViTConfig model_config() const;
};

}  // namespace qkv::train
