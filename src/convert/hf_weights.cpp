#include "convert/hf_weights.h"

#include <filesystem>
#include <map>

#include "convert/json_file.h"
#include "io/torch_checkpoint.h"

namespace qkv::convert {

namespace fs = std::filesystem;

CheckpointTensors CheckpointTensors::read_file(const std::string& path, const std::string& entry) {
  CheckpointTensors c;
  c.origin_ = path;
  CheckpointFormat format = sniff_checkpoint_format(path);
  if (format == CheckpointFormat::unknown)  // the error of the format its name suggests
    format =
        path.ends_with(".safetensors") ? CheckpointFormat::safetensors : CheckpointFormat::torch;
  if (format == CheckpointFormat::safetensors && !entry.empty())
    throw std::runtime_error(path + ": a safetensors file has no entry '" + entry + "' to pick");
  NamedTensors tensors = format == CheckpointFormat::torch
                             ? load_torch_checkpoint(path, entry, &c.entry_)
                             : load_safetensors(path);
  for (auto& [name, t] : tensors)
    c.tensors_[name] = t.dtype() == DType::f32 ? t : t.cast(DType::f32);
  return c;
}

CheckpointTensors CheckpointTensors::read_hf_folder(const std::string& dir) {
  // What save_pretrained writes, in the order transformers looks for it.
  for (const char* weights : {"model.safetensors", "pytorch_model.bin"}) {
    fs::path single = fs::path(dir) / weights;
    if (fs::exists(single)) return read_file(single.string());
    fs::path index = fs::path(dir) / (std::string(weights) + ".index.json");
    if (fs::exists(index)) return read_shards(dir, index.string());
  }
  throw std::runtime_error(
      dir + ": no model.safetensors, pytorch_model.bin or a sharded index of either");
}

CheckpointTensors CheckpointTensors::read_shards(const std::string& dir, const std::string& index) {
  JsonFile map = JsonFile::read(index);
  if (!map.has("weight_map") || !map.json()["weight_map"].is_object())
    throw std::runtime_error(index + ": missing \"weight_map\"");
  std::set<std::string> shards;
  for (auto& [name, file] : map.json()["weight_map"].items())
    shards.insert(file.get<std::string>());
  CheckpointTensors c;
  c.origin_ = dir;
  for (const auto& shard : shards) {
    if (shard.find('/') != std::string::npos || shard.find("..") != std::string::npos)
      throw std::runtime_error(index + ": shard name '" + shard + "' is not a file name");
    for (auto& [name, t] : read_file((fs::path(dir) / shard).string()).tensors_)
      c.tensors_[name] = t;
  }
  return c;
}

Tensor CheckpointTensors::take(const std::string& name, const Shape& shape) {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw std::runtime_error(origin_ + ": missing tensor '" + name + "'");
  if (it->second.shape() != shape)
    throw std::runtime_error(origin_ + ": tensor '" + name + "' has shape " +
                             shape_str(it->second.shape()) + ", expected " + shape_str(shape));
  taken_.insert(name);
  return it->second;
}

std::vector<Tensor> CheckpointTensors::take_row_blocks(const std::string& name, const Shape& shape,
                                                       int64_t parts) {
  Tensor packed = take(name, shape);
  const int64_t rows = shape.at(0) / parts;
  std::vector<Tensor> out;
  for (int64_t k = 0; k < parts; ++k) out.push_back(packed.slice_rows(k * rows, (k + 1) * rows));
  return out;
}

const Shape& CheckpointTensors::shape(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw std::runtime_error(origin_ + ": missing tensor '" + name + "'");
  return it->second.shape();
}

void CheckpointTensors::finish() const {
  std::string unused;
  int n = 0;
  for (const auto& [name, t] : tensors_)
    if (!taken_.count(name) && n++ < 5) unused += (unused.empty() ? "" : ", ") + name;
  if (n > 0)
    throw std::runtime_error(origin_ + ": " + std::to_string(n) +
                             " tensor(s) this conversion does not understand (an option qkv "
                             "lacks?): " +
                             unused + (n > 5 ? ", ..." : ""));
}

std::string activation_from_hf(const JsonFile& cfg, const std::string& key) {
  static const std::map<std::string, std::string> names = {
      {"gelu", "gelu"},           {"gelu_new", "gelu_tanh"}, {"gelu_pytorch_tanh", "gelu_tanh"},
      {"gelu_fast", "gelu_tanh"}, {"relu", "relu"},          {"silu", "silu"},
      {"swish", "silu"}};
  std::string name = cfg.get<std::string>(key, "gelu");
  auto it = names.find(name);
  if (it == names.end())
    throw std::runtime_error(cfg.path() + ": " + key + " \"" + name + "\" is not supported");
  return it->second;
}

std::string activation_to_hf(const std::string& qkv_name) {
  return qkv_name == "gelu_tanh" ? "gelu_new" : qkv_name;  // relu, gelu, silu: the same names
}

void check_output_dir(const std::string& dir) {
  if (fs::exists(dir) && (!fs::is_directory(dir) || !fs::is_empty(dir)))
    throw std::runtime_error(dir + " exists and is not an empty directory: convert into a new one");
}

}  // namespace qkv::convert
