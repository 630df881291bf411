#include "nn/vit.h"

#include <cmath>
#include <stdexcept>
#include <utility>

namespace qkv::nn {

LayerShape ViTConfig::layer_shape() const {
  return {d_model, heads, d_ff, ops::activation_from_name(activation), true, layer_norm_eps};
}

void ViTConfig::check(const std::string& where) const {
  auto need = [&](bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument(where + ": " + what);
  };
  need(channels == 1 || channels == 3, "channels must be 1 or 3");
  need(patch_size > 0 && image_size > 0 && image_size % patch_size == 0,
       "image-size must be a positive multiple of patch-size");
  need(d_model > 0 && heads > 0 && d_model % heads == 0, "d-model must be a multiple of heads");
  need(d_ff > 0 && layers > 0, "d-ff and layers must be positive");
  need(classes.size() >= 2, "a classifier needs at least 2 classes");
  need(dropout >= 0 && dropout < 1, "dropout must be in [0, 1)");
  need(layer_norm_eps > 0, "layer-norm-eps must be positive");
  need(int64_t(mean.size()) == channels && int64_t(stddev.size()) == channels,
       "mean and std need one value per channel");
  for (float s : stddev) need(s > 0, "std must be positive");
  try {
    ops::activation_from_name(activation);
  } catch (const std::invalid_argument& e) {
    need(false, e.what());
  }
  moe.check(where, layers);
}

ViTConfig ViTConfig::preset(const std::string& name) {
  ViTConfig c;
  if (name == "vit-fashion") {
    c.channels = 1, c.image_size = 28, c.patch_size = 4;
    c.d_model = 64, c.heads = 4, c.d_ff = 128, c.layers = 6;
    c.dropout = 0.f, c.layer_norm_eps = 1e-6f;
  } else if (name == "vit-b16") {
    c.channels = 3, c.image_size = 224, c.patch_size = 16;
    c.d_model = 768, c.heads = 12, c.d_ff = 3072, c.layers = 12;
    c.dropout = 0.f, c.layer_norm_eps = 1e-12f;  // Hugging Face's ViTConfig defaults
    c.mean = c.stddev = {0.5f, 0.5f, 0.5f};
  } else {
    throw std::invalid_argument("unknown ViT preset '" + name +
                                "' (expected vit-fashion or vit-b16)");
  }
  c.mean.resize(size_t(c.channels), 0.5f);
  c.stddev.resize(size_t(c.channels), 0.5f);
  return c;
}

void ViTConfig::override_shape(const ViTConfig& given) {
  if (given.channels) channels = given.channels;
  if (given.image_size) image_size = given.image_size;
  if (given.patch_size) patch_size = given.patch_size;
  if (given.d_model) d_model = given.d_model;
  if (given.heads) heads = given.heads;
  if (given.d_ff) d_ff = given.d_ff;
  if (given.layers) layers = given.layers;
  moe = given.moe;
}

void ViTConfig::bind_shape(Options& o) {
  // The help texts are what `qkv train-vit --help` shows.
  o.add("channels", channels, "image channels, 1 or 3 (0: the preset's)");
  o.add("image-size", image_size, "image height and width (0: the preset's)");
  o.add("patch-size", patch_size, "patch height and width (0: the preset's)");
  o.add("d-model", d_model, "model width (0: the preset's)");
  o.add("heads", heads, "attention heads (0: the preset's)");
  o.add("d-ff", d_ff, "MLP width (0: the preset's)");
  o.add("layers", layers, "encoder layers (0: the preset's)");
  moe.bind(o);
}

void ViTConfig::bind(Options& o) {
  bind_shape(o);
  o.add("classes", classes, "class names, in label order");
  o.add("dropout", dropout, "dropout used in training");
  o.add("layer-norm-eps", layer_norm_eps, "LayerNorm epsilon");
  o.add("activation", activation, "MLP activation");
  o.add("mean", mean, "per-channel mean of the pixels scaled to [0, 1]");
  o.add("std", stddev, "per-channel standard deviation of the pixels scaled to [0, 1]");
}

Tensor patchify(const Tensor& images, int64_t patch) {
  check_shape(
      images.rank() == 4 && patch > 0 && images.size(2) % patch == 0 && images.size(3) % patch == 0,
      "patchify: images must be [B, C, H, W] with H and W multiples of " + std::to_string(patch) +
          ", got " + shape_str(images.shape()));
  int64_t b = images.size(0), c = images.size(1);
  int64_t gh = images.size(2) / patch, gw = images.size(3) / patch;
  Tensor grid = images.reshape({b, c, gh, patch, gw, patch});
  Tensor patches = ops::permute(grid, {0, 2, 4, 1, 3, 5});  // [B, gh, gw, C, P, P]
  return patches.reshape({b, gh * gw, c * patch * patch});
}

// EncoderLayer names -> Hugging Face ViTLayer names.
std::string hf_vit_layer_name(const std::string& name) {
  static const std::pair<const char*, const char*> table[] = {
      {"self_attn.q_proj.", "attention.attention.query."},
      {"self_attn.k_proj.", "attention.attention.key."},
      {"self_attn.v_proj.", "attention.attention.value."},
      {"self_attn.out_proj.", "attention.output.dense."},
      {"self_attn_layer_norm.", "layernorm_before."},
      {"fc1.", "intermediate.dense."},
      {"fc2.", "output.dense."},
      {"final_layer_norm.", "layernorm_after."},
  };
  if (name.starts_with("ffn.")) return name;  // MoE: router and experts
  for (const auto& [from, to] : table)
    if (name.starts_with(from)) return to + name.substr(std::string(from).size());
  throw std::logic_error("no Hugging Face ViT name for encoder parameter '" + name + "'");
}

namespace {
const ViTConfig& checked(const ViTConfig& c) {
  c.check("ViT");
  return c;
}
}  // namespace

ViT::ViT(const ViTConfig& config)
    : config_(checked(config)),
      patch_weight_(
          make_param({config.d_model, config.channels, config.patch_size, config.patch_size})),
      patch_bias_(make_param({config.d_model})),
      cls_token_(make_param({1, 1, config.d_model})),
      positions_(make_param({1, config.patches() + 1, config.d_model})),
      final_norm_(config.d_model, config.layer_norm_eps),
      classifier_(config.d_model, config.num_classes()) {
  for (int64_t i = 0; i < config.layers; ++i)
    layers_.emplace_back(config.layer_shape(), layer_moe(config.moe, i));
}

void ViT::init(Rng& rng) {
  Tensor w = patch_weight_.mutable_value().reshape(
      {config_.d_model, config_.channels * config_.patch_size * config_.patch_size});
  init_xavier_uniform(w, rng);
  init_normal(cls_token_.mutable_value(), rng, 0.02f);
  init_normal(positions_.mutable_value(), rng, 0.02f);
  for (auto& l : layers_) l.init(rng);
  classifier_.init(rng);
}

ParamList ViT::params() const {
  ParamList out{{"vit.embeddings.cls_token", cls_token_},
                {"vit.embeddings.position_embeddings", positions_},
                {"vit.embeddings.patch_embeddings.projection.weight", patch_weight_},
                {"vit.embeddings.patch_embeddings.projection.bias", patch_bias_}};
  for (size_t i = 0; i < layers_.size(); ++i) {
    ParamList layer;
    layers_[i].params("", layer);  // names start with "."
    for (auto& [name, v] : layer)
      out.emplace_back(
          "vit.encoder.layer." + std::to_string(i) + "." + hf_vit_layer_name(name.substr(1)), v);
  }
  final_norm_.params("vit.layernorm", out);
  classifier_.params("classifier", out);
  return out;
}

LinearList ViT::linears() {
  LinearList out;
  for (size_t i = 0; i < layers_.size(); ++i) {
    LinearList layer;
    layers_[i].linears("", layer);  // names start with "."
    for (auto& [name, linear] : layer) {
      std::string hf = hf_vit_layer_name(name.substr(1) + ".");  // ends with "."
      hf.pop_back();
      out.emplace_back("vit.encoder.layer." + std::to_string(i) + "." + hf, linear);
    }
  }
  return out;
}

Var ViT::features(const Tensor& images, const Context& ctx) const {
  const ViTConfig& c = config_;
  check_shape(images.rank() == 4 && images.size(1) == c.channels &&
                  images.size(2) == c.image_size && images.size(3) == c.image_size,
              "ViT: images must be [B, " + std::to_string(c.channels) + ", " +
                  std::to_string(c.image_size) + ", " + std::to_string(c.image_size) + "], got " +
                  shape_str(images.shape()));
  int64_t b = images.size(0), d = c.d_model;
  Var patches(patchify(images, c.patch_size));  // [B, N, C*P*P]
  Var w = reshape(patch_weight_, {d, c.channels * c.patch_size * c.patch_size});
  Var tokens = linear(patches, w, patch_bias_);  // [B, N, d]
  // The class token repeated over the batch: zeros [B, 1, d] + cls [1, 1, d].
  Var cls = add(Var(Tensor::zeros({b, 1, d}, DType::f32, device())), cls_token_);
  Var x = ctx.drop(add(concat({cls, tokens}, 1), positions_));  // [B, N + 1, d]
  // Only the class token's features are read: the last layer computes them alone.
  for (size_t i = 0; i + 1 < layers_.size(); ++i) x = layers_[i](x, ops::AttentionMask{}, ctx);
  const EncoderLayer& last = layers_.back();
  Var first = last.is_moe() ? first_position_of(last(x, ops::AttentionMask{}, ctx))
                            : last.first_position(x, ops::AttentionMask{}, ctx);  // [B, 1, d]
  return final_norm_(reshape(first, {b, d}));
}

Var ViT::forward(const Tensor& images, const Context& ctx) const {
  return classifier_(features(images, ctx));
}

}  // namespace qkv::nn
