#include "model_dir/adapter_set.h"

#include <stdexcept>

#include "model_dir/adapter_dir.h"

namespace qkv::model_dir {

AdapterSpec parse_adapter_spec(const std::string& spec) {
  size_t eq = spec.find('=');
  AdapterSpec s;
  s.dir = eq == std::string::npos ? spec : spec.substr(eq + 1);
  if (s.dir.empty()) throw std::invalid_argument("--adapter '" + spec + "' names no directory");
  if (eq != std::string::npos) {
    s.name = spec.substr(0, eq);
    if (s.name.empty()) throw std::invalid_argument("--adapter '" + spec + "': empty name");
  }
  return s;
}

AdapterSet::AdapterSet(const std::vector<std::string>& specs, const std::string& which,
                       nn::LinearList linears, const std::string& base_dir,
                       const nn::ParamList& base_params)
    : linears_(std::move(linears)) {
  if (specs.empty()) return;
  std::string checksum = nn::weights_checksum(base_params);
  for (const auto& text : specs) {
    AdapterSpec spec = parse_adapter_spec(text);
    nn::LoraAdapter adapter = load_adapter(spec.dir, which, linears_, base_dir, checksum);
    if (!spec.name.empty()) adapter.name = spec.name;
    for (const auto& loaded : adapters_)
      if (loaded.name == adapter.name)
        throw std::invalid_argument("two adapters are named '" + adapter.name +
                                    "' (give one NAME=DIR)");
    adapters_.push_back(std::move(adapter));
    dirs_.push_back(spec.dir);
  }
}

std::vector<std::string> AdapterSet::names() const {
  std::vector<std::string> out;
  for (const auto& a : adapters_) out.push_back(a.name);
  return out;
}

size_t AdapterSet::index(const std::string& name) const {
  for (size_t i = 0; i < adapters_.size(); ++i)
    if (adapters_[i].name == name) return i;
  std::string known;
  for (const auto& a : adapters_) known += (known.empty() ? "" : ", ") + a.name;
  throw std::invalid_argument("no adapter named '" + name +
                              "' (loaded: " + (known.empty() ? "none" : known) + ")");
}

const nn::LoraAdapter& AdapterSet::adapter(const std::string& name) const {
  return adapters_[index(name)];
}

const std::string& AdapterSet::dir(const std::string& name) const {
  return dirs_[index(name)];
}

void AdapterSet::activate(const std::string& name) {
  const nn::LoraAdapter& chosen =
      name.empty() && !adapters_.empty() ? adapters_.front() : adapter(name);
  nn::attach_lora(linears_, chosen);
  active_ = chosen.name;
}

void AdapterSet::deactivate() {
  nn::detach_lora(linears_);
  active_.clear();
}

}  // namespace qkv::model_dir
