// Several LoRA adapters (adapter_dir.h) loaded for one base model, at most one of them attached
// to its linear layers at a time (unmerged): what the commands' --adapter [NAME=]DIR and
// --use-adapter NAME select, and what a server holding several adapters switches between.
#pragma once
#include <string>
#include <vector>

#include "nn/lora.h"

namespace qkv::model_dir {

// One adapter as a command names it: "NAME=DIR", or "DIR" (named after its last component).
struct AdapterSpec {
  std::string name, dir;
};
// Throws std::invalid_argument for an empty name or directory.
AdapterSpec parse_adapter_spec(const std::string& spec);

class AdapterSet {
 public:
  AdapterSet() = default;
  // Loads each spec's adapter (load_adapter, its `which` weights: best or last) for the base
  // model of base_dir, whose hidden linear layers are `linears` and whose parameters are
  // base_params (each adapter's recorded checksum must be theirs); the layers must outlive the
  // set. Nothing is attached yet.
  // Throws std::invalid_argument for two adapters of one name, and load_adapter's errors.
  AdapterSet(const std::vector<std::string>& specs, const std::string& which,
             nn::LinearList linears, const std::string& base_dir, const nn::ParamList& base_params);

  bool empty() const { return adapters_.empty(); }
  std::vector<std::string> names() const;  // in the order given
  // The adapter named `name` and its directory; std::invalid_argument listing the loaded names
  // for a name not among them.
  const nn::LoraAdapter& adapter(const std::string& name) const;
  const std::string& dir(const std::string& name) const;
  // Attaches `name`'s adapter in place of any other ("": the first given).
  void activate(const std::string& name);
  // Detaches it: the base model as it was loaded.
  void deactivate();
  const std::string& active() const { return active_; }  // "" when none is attached

 private:
  size_t index(const std::string& name) const;

  nn::LinearList linears_;
  std::vector<nn::LoraAdapter> adapters_;
  std::vector<std::string> dirs_;
  std::string active_;
};

}  // namespace qkv::model_dir
