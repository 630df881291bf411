#include "train/vit_train_config.h"

#include <stdexcept>

namespace qkv::train {

ViTTrainConfig::ViTTrainConfig() {
  optimizer = "adamw", lr_schedule = "cosine";
  learning_rate = 1e-3, weight_decay = 0.05, clip_norm = 1.0;
  beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8;
  warmup_steps = 500;
  label_smoothing = 0.1f, dropout = 0.f;  // short CPU runs underfit rather than overfit
  disp_freq = 50, valid_freq = 500, save_freq = 500;
  early_stopping = 0;
  model.channels = model.image_size = model.patch_size = 0;
  model.d_model = model.heads = model.d_ff = model.layers = 0;
}

void ViTTrainConfig::bind(Options& o) {
  o.add("model-dir", model_dir, "folder for the model, its config and checkpoints");
  o.add("train-set", train_set,
        "training images: fashion-mnist:train, idx:IMAGES,LABELS, or an image folder "
        "(ROOT/<class>/<image>; images of another size are resized bilinearly)");
  o.add("valid-set", valid_set, "validation images (same forms); empty: hold out valid-split");
  o.add("valid-split", valid_split, "images held out of train-set for validation (seeded)");
  o.add("preset", preset, "model shape: vit-fashion or vit-b16");
  model.bind_shape(o);
  o.add("batch-size", batch_size, "images per update");
  o.add("crop-padding", crop_padding, "random crop of the image padded by this (0: no crop)");
  o.add("horizontal-flip", horizontal_flip, "flip training images left-right at random");
  bind_loop(o);
}

void ViTTrainConfig::validate() const {
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument(what);
  };
  need(!model_dir.empty(), "--model-dir is required");
  need(!train_set.empty(), "--train-set is required");
  need(batch_size > 0, "batch-size must be positive");
  need(crop_padding >= 0, "crop-padding must not be negative");
  need(valid_split >= 0, "valid-split must not be negative");
  nn::ViTConfig shape = model_config();
  shape.moe.check("model", shape.layers);
  validate_loop();
}

nn::ViTConfig ViTTrainConfig::model_config() const {
  nn::ViTConfig c = nn::ViTConfig::preset(preset);
  c.override_shape(model);
  c.mean.resize(size_t(c.channels), 0.5f);
  c.stddev.resize(size_t(c.channels), 0.5f);
  c.dropout = dropout;
  return c;
}

}  // namespace qkv::train
