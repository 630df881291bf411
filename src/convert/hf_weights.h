// Reading Hugging Face model folders: the weights (model.safetensors or pytorch_model.bin, or
// the shards their .index.json lists; every tensor converted to f32) and activation names.
#pragma once
#include <map>
#include <set>
#include <string>
#include <vector>

#include "convert/json_file.h"
#include "io/safetensors.h"

namespace qkv::convert {

// Takes tensors out of a checkpoint by name, checking their shapes, and remembers which were
// taken so that finish() can reject what the conversion did not understand.
class CheckpointTensors {
 public:
  // model.safetensors, else pytorch_model.bin (each possibly sharded), as transformers prefers
  // them. Throws std::runtime_error naming the folder when it has neither.
  static CheckpointTensors read_hf_folder(const std::string& dir);
  // One safetensors file or torch.save checkpoint (io/torch_checkpoint.h), told by its content;
  // `entry` names the state dict inside a torch checkpoint of several parts.
  static CheckpointTensors read_file(const std::string& path, const std::string& entry = "");

  bool has(const std::string& name) const { return tensors_.count(name) > 0; }
  // The tensor `name` (f32) with `shape`; throws naming it when missing or shaped otherwise.
  Tensor take(const std::string& name, const Shape& shape);
  // `parts` equal blocks of rows of `name` (shape checked as take does): packed projections
  // such as torch's in_proj_weight or timm's qkv, [3d, d] -> three [d, d].
  std::vector<Tensor> take_row_blocks(const std::string& name, const Shape& shape, int64_t parts);
  // The shape of tensor `name`; throws naming it when missing.
  const Shape& shape(const std::string& name) const;
  // Marks `name` as understood without using it (e.g. a tied copy or a fixed table).
  void skip(const std::string& name) { taken_.insert(name); }
  // Throws when tensors remain that nothing took, naming them.
  void finish() const;
  const std::string& origin() const { return origin_; }
  // The entry of a torch checkpoint of several parts that the tensors came from, or "".
  const std::string& entry() const { return entry_; }

 private:
  // The shards that `index` ({"weight_map": {tensor: file}}) names, files in `dir`.
  static CheckpointTensors read_shards(const std::string& dir, const std::string& index);

  std::string origin_, entry_;
  std::map<std::string, Tensor> tensors_;
  std::set<std::string> taken_;
};

// The qkv activation (ops::activation_from_name) for the Hugging Face name under `key` of
// `cfg` (default "gelu"): gelu, gelu_new / gelu_fast / gelu_pytorch_tanh, relu, silu / swish.
// Throws std::runtime_error naming the file and key for any other.
std::string activation_from_hf(const JsonFile& cfg, const std::string& key);
// The Hugging Face name of a qkv activation.
std::string activation_to_hf(const std::string& qkv_name);

// Throws std::runtime_error when `dir` exists and is not empty: a conversion writes into a new
// (or empty) directory, so no older file (a model.best.safetensors, a shard) can shadow its
// output.
void check_output_dir(const std::string& dir);

}  // namespace qkv::convert
