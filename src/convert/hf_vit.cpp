#include "convert/hf_vit.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "convert/hf_weights.h"
#include "convert/json_file.h"
#include "model_dir/vit_dir.h"

namespace qkv::convert {

namespace fs = std::filesystem;

namespace {

// id2label {"0": "cat", "1": "dog", ...} -> class names in id order.
std::vector<std::string> classes_from(const JsonFile& cfg) {
  if (!cfg.has("id2label") || !cfg.json()["id2label"].is_object())
    throw std::runtime_error(cfg.path() + ": missing \"id2label\" (the class names)");
  const auto& labels = cfg.json()["id2label"];
  std::vector<std::string> classes(labels.size());
  for (auto& [key, name] : labels.items()) {
    size_t id = 0;
    try {
      id = std::stoul(key);
    } catch (const std::exception&) {
      id = classes.size();
    }
    if (id >= classes.size() || !name.is_string() || !classes[id].empty())
      throw std::runtime_error(cfg.path() + ": id2label must map 0.." +
                               std::to_string(classes.size() - 1) + " to names, each once");
    classes[id] = name.get<std::string>();
  }
  return classes;
}

}  // namespace

std::vector<std::string> vit_from_hf(const std::string& hf_dir, const std::string& qkv_dir) {
  check_output_dir(qkv_dir);
  std::vector<std::string> notes;
  JsonFile cfg = JsonFile::read(hf_dir + "/config.json");
  if (!cfg.get<bool>("qkv_bias", true))
    throw std::runtime_error(cfg.path() + ": qkv_bias false is not supported");
  nn::ViTConfig c;
  c.d_model = cfg.require<int64_t>("hidden_size");
  c.layers = cfg.require<int64_t>("num_hidden_layers");
  c.heads = cfg.require<int64_t>("num_attention_heads");
  c.d_ff = cfg.require<int64_t>("intermediate_size");
  c.image_size = cfg.get<int64_t>("image_size", 224);
  c.patch_size = cfg.get<int64_t>("patch_size", 16);
  c.channels = cfg.get<int64_t>("num_channels", 3);
  c.layer_norm_eps = cfg.get<float>("layer_norm_eps", 1e-12f);
  c.dropout = cfg.get<float>("hidden_dropout_prob", 0.f);
  c.activation = activation_from_hf(cfg, "hidden_act");
  c.classes = classes_from(cfg);
  c.mean.assign(size_t(c.channels), 0.5f);
  c.stddev.assign(size_t(c.channels), 0.5f);
  if (auto pre = JsonFile::read_if_exists(hf_dir + "/preprocessor_config.json")) {
    if (!pre->get<bool>("do_normalize", true)) {
      c.mean.assign(size_t(c.channels), 0.f);
      c.stddev.assign(size_t(c.channels), 1.f);
    } else {
      c.mean = pre->get<std::vector<float>>("image_mean", c.mean);
      c.stddev = pre->get<std::vector<float>>("image_std", c.stddev);
    }
    if (pre->get<bool>("do_rescale", true) == false ||
        std::abs(pre->get<double>("rescale_factor", 1 / 255.0) - 1 / 255.0) > 1e-9)
      throw std::runtime_error(pre->path() +
                               ": qkv scales pixels by 1/255; other rescaling is "
                               "not supported");
  } else {
    notes.push_back("no preprocessor_config.json: normalising with mean 0.5, std 0.5");
  }
  try {
    c.check(cfg.path());
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(e.what());
  }

  CheckpointTensors w = CheckpointTensors::read_hf_folder(hf_dir);
  for (const char* unused : {"vit.pooler.dense.weight", "vit.pooler.dense.bias"}) w.skip(unused);
  nn::ViT model(c);
  NamedTensors named;
  for (const auto& [name, param] : model.params())
    named.emplace_back(name, w.take(name, param.value().shape()));
  w.finish();
  nn::load_params(model.params(), named, w.origin());
  model_dir::save_vit_dir(qkv_dir, c, model.params());
  return notes;
}

std::vector<std::string> vit_to_hf(const std::string& qkv_dir, const std::string& hf_dir,
                                   const std::string& which) {
  check_output_dir(hf_dir);
  std::unique_ptr<nn::ViT> model = model_dir::load_vit_dir(qkv_dir, which);
  const nn::ViTConfig& c = model->config();
  if (c.moe.enabled())
    throw std::runtime_error(qkv_dir + ": ViTForImageClassification has no Mixture-of-Experts " +
                             "layers; this model has moe-experts " + std::to_string(c.moe.experts));
  nlohmann::ordered_json id2label = nlohmann::ordered_json::object(),
                         label2id = nlohmann::ordered_json::object();
  for (size_t i = 0; i < c.classes.size(); ++i) {
    id2label[std::to_string(i)] = c.classes[i];
    label2id[c.classes[i]] = i;
  }
  nlohmann::ordered_json cfg = {{"architectures", {"ViTForImageClassification"}},
                                {"model_type", "vit"},
                                {"hidden_size", c.d_model},
                                {"num_hidden_layers", c.layers},
                                {"num_attention_heads", c.heads},
                                {"intermediate_size", c.d_ff},
                                {"hidden_act", activation_to_hf(c.activation)},
                                {"hidden_dropout_prob", c.dropout},
                                {"attention_probs_dropout_prob", 0.0},
                                {"layer_norm_eps", c.layer_norm_eps},
                                {"image_size", c.image_size},
                                {"patch_size", c.patch_size},
                                {"num_channels", c.channels},
                                {"qkv_bias", true},
                                {"id2label", id2label},
                                {"label2id", label2id},
                                {"torch_dtype", "float32"}};
  nlohmann::ordered_json pre = {{"image_processor_type", "ViTImageProcessor"},
                                {"do_resize", true},
                                {"size", {{"height", c.image_size}, {"width", c.image_size}}},
                                {"resample", 2},
                                {"do_rescale", true},
                                {"rescale_factor", 1 / 255.0},
                                {"do_normalize", true},
                                {"image_mean", c.mean},
                                {"image_std", c.stddev}};
  fs::create_directories(hf_dir);
  write_json(hf_dir + "/config.json", cfg);
  write_json(hf_dir + "/preprocessor_config.json", pre);
  save_safetensors(hf_dir + "/model.safetensors", nn::param_tensors(model->params()),
                   {{"format", "pt"}});
  return {};
}

}  // namespace qkv::convert
