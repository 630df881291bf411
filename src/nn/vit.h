// Vision Transformer (Dosovitskiy et al. 2020): an image cut into P x P patches, each patch
// flattened in (channel, row, column) order and projected to d_model, a learned class token in
// front, learned 1-D position embeddings, pre-norm encoder layers with GELU MLPs, a final
// LayerNorm and a linear classifier on the class token.
//
// Parameter names are Hugging Face's ViTForImageClassification ones (vit.embeddings.cls_token,
// vit.encoder.layer.0.attention.attention.query.weight, vit.layernorm, classifier, ...). The
// patch projection is stored as HF's Conv2d weight [d, C, P, P]; a Linear over flattened
// patches with that weight reshaped to [d, C*P*P] computes the same. The encoder layers are
// nn::EncoderLayer; their names are mapped to HF's by one rename table (vit.cpp).
// Mixture-of-Experts layers (moe-experts > 0, nn/moe.h) have no Hugging Face ViT counterpart;
// their feed-forward keeps the encoder layer's NLLB-MoE names under the HF layer's:
//   vit.encoder.layer.N.ffn.router.classifier.weight [E, d]
//   vit.encoder.layer.N.ffn.experts.expert_M.fc1.weight / .bias [d_ff, d], fc2 [d, d_ff]
#pragma once
#include <string>
#include <vector>

#include "config/options.h"
#include "nn/transformer.h"

namespace qkv::nn {

struct ViTConfig {
  int64_t channels = 1, image_size = 28, patch_size = 4;
  int64_t d_model = 64, heads = 4, d_ff = 128, layers = 6;
  std::vector<std::string> classes;  // class names; the classifier has one output per class
  float dropout = 0.f;
  float layer_norm_eps = 1e-6f;
  std::string activation = "gelu";  // of the MLPs (see ops::activation_from_name)
  // Input normalisation (x / 255 - mean) / std per channel, chosen on the training data.
  std::vector<float> mean{0.5f}, stddev{0.5f};
  MoeOptions moe;  // Mixture-of-Experts layers (counted from 0)

  int64_t patches() const { return (image_size / patch_size) * (image_size / patch_size); }
  int64_t num_classes() const { return int64_t(classes.size()); }
  LayerShape layer_shape() const;
  // Throws std::invalid_argument naming the first inconsistent field (prefixed with `where`).
  void check(const std::string& where) const;

  // "vit-fashion" (28 x 28 x 1, patch 4, d-model 64, 6 layers of 4 heads, MLP 128: 206k
  // parameters, about 15 minutes of training on two CPU cores) or "vit-b16" (ViT-Base/16,
  // 224 x 224 x 3); unknown names are an error listing these.
  static ViTConfig preset(const std::string& name);
  // Takes `given`'s bind_shape fields that are not 0 (training options leave unset ones 0),
  // and its MoE options (no preset has experts).
  void override_shape(const ViTConfig& given);

  // The fields a user chooses when training (channels, image-size, patch-size, d-model, heads,
  // d-ff, layers, MoeOptions' moe-*) under the kebab-case keys that `qkv train-vit`'s options, a
  // training YAML and a model directory's config.yaml share.
  void bind_shape(Options& options);
  // Every field: bind_shape's, then classes, dropout, layer-norm-eps, activation, mean and
  // std. The keys of config.yaml (see model_dir/vit_dir.h, which adds model-type).
  void bind(Options& options);
};

// images f32 [B, C, H, W] -> patches [B, (H/P)*(W/P), C*P*P], row-major over the patch grid,
// each patch in (channel, row, column) order (the order of a Conv2d weight [d, C, P, P]).
Tensor patchify(const Tensor& images, int64_t patch);

class ViT {
 public:
  explicit ViT(const ViTConfig& config);
  const ViTConfig& config() const { return config_; }
  void init(Rng& rng);
  ParamList params() const;
  // The hidden linear layers (not the classifier), under Hugging Face's module names, for LoRA.
  LinearList linears();
  // Moves the parameters to `device`; images must live there too.
  void to(Device device) { move_params(params(), device); }
  Device device() const { return cls_token_.value().device(); }

  // images f32 [B, C, H, W], normalised -> class-token features after the final LayerNorm [B, d].
  Var features(const Tensor& images, const Context& ctx) const;
  // images -> logits [B, classes].
  Var forward(const Tensor& images, const Context& ctx) const;

 private:
  ViTConfig config_;
  Var patch_weight_;  // [d, C, P, P]
  Var patch_bias_;    // [d]
  Var cls_token_;     // [1, 1, d]
  Var positions_;     // [1, N + 1, d]
  std::vector<EncoderLayer> layers_;
  LayerNorm final_norm_;
  Linear classifier_;
};

// The Hugging Face name of an EncoderLayer parameter ("self_attn.q_proj.weight" ->
// "attention.attention.query.weight"); an MoE feed-forward's ("ffn.") stay as they are.
std::string hf_vit_layer_name(const std::string& encoder_layer_name);

}  // namespace qkv::nn
