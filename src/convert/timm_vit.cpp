#include "convert/timm_vit.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "convert/hf_weights.h"
#include "convert/json_file.h"
#include "model_dir/vit_dir.h"

namespace qkv::convert {

namespace {

// The heads of timm's named ViT sizes (timm/models/vision_transformer.py).
int64_t heads_of(const std::string& architecture) {
  static const std::pair<const char*, int64_t> sizes[] = {
      {"vit_tiny_", 3},   {"vit_small_", 6}, {"vit_medium_", 8}, {"vit_base_", 12},
      {"vit_large_", 16}, {"vit_huge_", 16}, {"vit_giant_", 16}, {"vit_gigantic_", 16}};
  for (const auto& [prefix, heads] : sizes)
    if (architecture.starts_with(prefix)) return heads;
  return 0;
}

// cfg[key] when it is an object, else an empty one.
nlohmann::json object_at(const JsonFile& cfg, const char* key) {
  return cfg.has(key) && cfg.json()[key].is_object() ? cfg.json()[key] : nlohmann::json::object();
}

int64_t count_blocks(const CheckpointTensors& w) {
  int64_t n = 0;
  while (w.has("blocks." + std::to_string(n) + ".norm1.weight")) ++n;
  return n;
}

}  // namespace

bool is_timm_folder(const std::string& dir) {
  auto cfg = JsonFile::read_if_exists(dir + "/config.json");
  return cfg && cfg->has("architecture") && !cfg->has("model_type");
}

std::vector<std::string> vit_from_timm(const std::string& dir, const std::string& qkv_dir) {
  check_output_dir(qkv_dir);
  std::vector<std::string> notes;
  JsonFile cfg = JsonFile::read(dir + "/config.json");
  const std::string arch = cfg.require<std::string>("architecture");
  if (!arch.starts_with("vit_"))
    throw std::runtime_error(cfg.path() + ": timm architecture \"" + arch +
                             "\" is not supported (qkv converts vit_* VisionTransformers)");
  const nlohmann::json args = object_at(cfg, "model_args");
  if (args.contains("num_heads") && !args["num_heads"].is_number_integer())
    throw std::runtime_error(cfg.path() + ": model_args.num_heads is not an integer");
  const std::string pool = cfg.get<std::string>("global_pool", args.value("global_pool", "token"));
  if (pool != "token")
    throw std::runtime_error(cfg.path() + ": global_pool \"" + pool +
                             "\" is not supported (qkv classifies from the class token)");

  CheckpointTensors w = CheckpointTensors::read_hf_folder(dir);
  for (const char* name : {"cls_token", "pos_embed", "patch_embed.proj.weight", "head.weight"})
    if (!w.has(name))
      throw std::runtime_error(w.origin() + ": missing tensor '" + name +
                               "' (a ViT without a class token or a head is not supported)");
  nn::ViTConfig c;
  const Shape patch = w.shape("patch_embed.proj.weight");  // [D, C, P, P]
  c.d_model = patch.at(0), c.channels = patch.at(1), c.patch_size = patch.at(2);
  const int64_t positions = w.shape("pos_embed").at(1);
  const int64_t grid = std::llround(std::sqrt(double(std::max<int64_t>(positions - 1, 0))));
  if (grid == 0 || grid * grid + 1 != positions)
    throw std::runtime_error(w.origin() + ": pos_embed holds " + std::to_string(positions) +
                             " positions, not a class token's and a square grid's (positions "
                             "without the class token, or non-square inputs, are not supported)");
  c.image_size = grid * c.patch_size;
  c.layers = count_blocks(w);
  c.d_ff = c.layers ? w.shape("blocks.0.mlp.fc1.weight").at(0) : 0;
  c.heads = args.value("num_heads", heads_of(arch));
  if (c.heads == 0)
    throw std::runtime_error(cfg.path() + ": the number of heads of \"" + arch +
                             "\" is unknown; add \"model_args\": {\"num_heads\": N}");
  c.layer_norm_eps = 1e-6f;  // timm's ViT LayerNorms
  const int64_t classes = w.shape("head.weight").at(0);
  c.classes = cfg.get<std::vector<std::string>>("label_names", {});
  if (c.classes.empty()) {
    for (int64_t i = 0; i < classes; ++i) c.classes.push_back(std::to_string(i));
    notes.push_back("no label_names in config.json: classes are named 0.." +
                    std::to_string(classes - 1));
  } else if (int64_t(c.classes.size()) != classes) {
    throw std::runtime_error(cfg.path() + ": " + std::to_string(c.classes.size()) +
                             " label_names for a head of " + std::to_string(classes) + " classes");
  }
  const nlohmann::json pre = object_at(cfg, "pretrained_cfg");
  c.mean = pre.value("mean", std::vector<float>(size_t(c.channels), 0.5f));
  c.stddev = pre.value("std", std::vector<float>(size_t(c.channels), 0.5f));
  if (!pre.contains("mean")) notes.push_back("no pretrained_cfg mean/std: normalising with 0.5");
  try {
    c.check(cfg.path());
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(e.what());
  }

  // qkv's (Hugging Face's) names <- timm's; q, k and v are the three row blocks of `qkv`.
  std::map<std::string, Tensor> mapped = {
      {"vit.embeddings.cls_token", w.take("cls_token", {1, 1, c.d_model})},
      {"vit.embeddings.position_embeddings", w.take("pos_embed", {1, grid * grid + 1, c.d_model})},
      {"vit.embeddings.patch_embeddings.projection.weight",
       w.take("patch_embed.proj.weight", {c.d_model, c.channels, c.patch_size, c.patch_size})},
      {"vit.embeddings.patch_embeddings.projection.bias",
       w.take("patch_embed.proj.bias", {c.d_model})},
      {"vit.layernorm.weight", w.take("norm.weight", {c.d_model})},
      {"vit.layernorm.bias", w.take("norm.bias", {c.d_model})},
      {"classifier.weight", w.take("head.weight", {classes, c.d_model})},
      {"classifier.bias", w.take("head.bias", {classes})}};
  const int64_t d = c.d_model;
  for (int64_t i = 0; i < c.layers; ++i) {
    const std::string from = "blocks." + std::to_string(i) + ".";
    const std::string to = "vit.encoder.layer." + std::to_string(i) + ".";
    const char* qkv[] = {"query", "key", "value"};
    auto qkv_w = w.take_row_blocks(from + "attn.qkv.weight", {3 * d, d}, 3);
    auto qkv_b = w.take_row_blocks(from + "attn.qkv.bias", {3 * d}, 3);
    for (int k = 0; k < 3; ++k) {
      mapped[to + "attention.attention." + qkv[k] + ".weight"] = qkv_w[size_t(k)];
      mapped[to + "attention.attention." + qkv[k] + ".bias"] = qkv_b[size_t(k)];
    }
    const std::pair<const char*, const char*> pairs[] = {{"attn.proj", "attention.output.dense"},
                                                         {"norm1", "layernorm_before"},
                                                         {"norm2", "layernorm_after"},
                                                         {"mlp.fc1", "intermediate.dense"},
                                                         {"mlp.fc2", "output.dense"}};
    for (const auto& [timm_name, hf_name] : pairs) {
      const std::string weight = from + timm_name + ".weight";
      mapped[to + hf_name + ".weight"] = w.take(weight, w.shape(weight));
      mapped[to + hf_name + ".bias"] = w.take(from + timm_name + ".bias", {w.shape(weight)[0]});
    }
  }
  w.finish();  // fc_norm, reg_token, ls1.gamma, norm_pre, ...: variants qkv lacks

  nn::ViT model(c);
  NamedTensors named;
  for (const auto& [name, param] : model.params()) {
    auto it = mapped.find(name);
    if (it == mapped.end() || it->second.shape() != param.value().shape())
      throw std::runtime_error(w.origin() + ": no tensor of shape " +
                               shape_str(param.value().shape()) + " for " + name);
    named.emplace_back(name, it->second);
  }
  nn::load_params(model.params(), named, w.origin());
  model_dir::save_vit_dir(qkv_dir, c, model.params());
  return notes;
}

}  // namespace qkv::convert
