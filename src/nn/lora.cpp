#include "nn/lora.h"

#include <cmath>
#include <cstring>
#include <set>
#include <sstream>
#include <stdexcept>

namespace qkv::nn {

namespace {
constexpr const char* kKeyPrefix = "base_model.model.";

bool matches(const std::string& module, const std::string& target) {
  return target == "all-linear" || module == target ||
         (module.size() > target.size() && module.ends_with("." + target));
}

Linear& find_linear(const LinearList& linears, const std::string& module) {
  for (const auto& [name, linear] : linears)
    if (name == module) return *linear;
  throw std::invalid_argument("the model has no linear layer '" + module + "'");
}
}  // namespace

float LoraOptions::scaling(int64_t r) const {
  double a = alpha_or_rank();
  return float(rslora ? a / std::sqrt(double(r)) : a / double(r));
}

void LoraOptions::bind(Options& o) {
  o.add("lora-rank", rank,
        "train a LoRA adapter of this rank on a frozen --init-from model (0: no LoRA)");
  o.add("lora-alpha", alpha, "LoRA alpha: the update is scaled by alpha / rank (0: rank)");
  o.add("lora-dropout", dropout, "dropout on the input of the LoRA update while training");
  o.add("lora-targets", targets,
        "modules that get a LoRA update, as peft names them: names or name endings "
        "(q_proj v_proj, comma-separated or not), or all-linear; empty: q_proj,v_proj "
        "(ViT: query,value)");
  o.add("lora-rslora", rslora, "rank-stabilised LoRA: scale by alpha / sqrt(rank)");
}

void LoraOptions::check() const {
  if (rank < 0) throw std::invalid_argument("lora-rank must be 0 (off) or positive");
  if (alpha < 0) throw std::invalid_argument("lora-alpha must be positive (or 0: the rank)");
  if (dropout < 0 || dropout >= 1) throw std::invalid_argument("lora-dropout must be in [0, 1)");
}

std::vector<std::string> split_lora_targets(const std::vector<std::string>& targets) {
  std::vector<std::string> out;
  for (const auto& t : targets) {
    std::stringstream s(t);
    std::string item;
    while (std::getline(s, item, ','))
      if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::string lora_key(const std::string& module, char which) {
  return kKeyPrefix + module + ".lora_" + which + ".weight";
}

ParamList LoraAdapter::params() const {
  ParamList out;
  for (const auto& [module, w] : modules) {
    out.emplace_back(lora_key(module, 'A'), w.a);
    out.emplace_back(lora_key(module, 'B'), w.b);
  }
  return out;
}

int64_t LoraAdapter::parameter_count() const {
  return count_params(params());
}

std::vector<std::string> match_lora_targets(const LinearList& linears,
                                            const std::vector<std::string>& targets) {
  std::vector<std::string> wanted = split_lora_targets(targets);
  if (wanted.empty()) throw std::invalid_argument("lora-targets names no module");
  for (const auto& t : wanted) {
    bool found = false;
    for (const auto& [name, linear] : linears) found = found || matches(name, t);
    if (found) continue;
    std::set<std::string> endings;
    for (const auto& [name, linear] : linears) endings.insert(name.substr(name.rfind('.') + 1));
    std::string known;
    for (const auto& e : endings) known += (known.empty() ? "" : ", ") + e;
    throw std::invalid_argument("lora-targets: the model has no linear layer '" + t +
                                "' (its linear layers end in: " + known + ", or all-linear)");
  }
  std::vector<std::string> out;
  for (const auto& [name, linear] : linears)
    for (const auto& t : wanted)
      if (matches(name, t)) {
        out.push_back(name);
        break;
      }
  return out;
}

LoraAdapter new_lora_adapter(const LinearList& linears, const LoraOptions& options, Rng& rng) {
  options.check();
  if (!options.enabled()) throw std::invalid_argument("lora-rank must be positive");
  LoraAdapter adapter;
  for (const auto& module : match_lora_targets(linears, options.targets)) {
    const Tensor& w = find_linear(linears, module).weight.value();
    int64_t out = w.size(0), in = w.size(1), r = options.rank;
    if (r > std::min(in, out))
      throw std::invalid_argument("lora-rank " + std::to_string(r) + " is larger than " + module +
                                  " allows: its weight is [" + std::to_string(out) + ", " +
                                  std::to_string(in) + "], so at most " +
                                  std::to_string(std::min(in, out)));
    Tensor a = Tensor::empty({r, in});
    float bound = 1.f / std::sqrt(float(in));  // kaiming_uniform(a = sqrt(5))
    rng.uniform(a, -bound, bound);
    adapter.modules[module] = {Var(a.to(w.device()), true),
                               Var(Tensor::zeros({out, r}, DType::f32, w.device()), true),
                               options.scaling(r), options.dropout};
  }
  return adapter;
}

LoraAdapter lora_adapter_from_tensors(
    const NamedTensors& tensors, const LinearList& linears,
    const std::function<float(const std::string& module, int64_t rank)>& scaling,
    const std::string& source) {
  std::map<std::string, std::pair<Tensor, Tensor>> found;  // module -> (A, B)
  for (const auto& [key, t] : tensors) {
    std::string a_end = ".lora_A.weight", b_end = ".lora_B.weight";
    bool is_a = key.ends_with(a_end), is_b = key.ends_with(b_end);
    if (!key.starts_with(kKeyPrefix) || !(is_a || is_b))
      throw std::runtime_error(source + ": tensor '" + key +
                               "' is not a LoRA Linear weight (base_model.model.<module>"
                               ".lora_A.weight or .lora_B.weight)");
    std::string module =
        key.substr(std::strlen(kKeyPrefix), key.size() - std::strlen(kKeyPrefix) - a_end.size());
    (is_a ? found[module].first : found[module].second) = t.cast(DType::f32);
  }
  LoraAdapter adapter;
  for (auto& [module, ab] : found) {
    auto& [a, b] = ab;
    Linear* linear = nullptr;
    for (const auto& [name, l] : linears)
      if (name == module) linear = l;
    if (!linear)
      throw std::runtime_error(source + ": LoRA module '" + module +
                               "' is not a linear layer of this model");
    if (!a.defined() || !b.defined())
      throw std::runtime_error(source + ": module '" + module + "' lacks its lora_" +
                               (a.defined() ? "B" : "A") + " weight");
    int64_t out = linear->weight.shape()[0], in = linear->weight.shape()[1], r = a.size(0);
    if (a.rank() != 2 || b.rank() != 2 || a.size(1) != in || b.size(0) != out || b.size(1) != r)
      throw std::runtime_error(source + ": module '" + module + "' has lora_A " +
                               shape_str(a.shape()) + " and lora_B " + shape_str(b.shape()) +
                               "; its weight [" + std::to_string(out) + ", " + std::to_string(in) +
                               "] needs [r, " + std::to_string(in) + "] and [" +
                               std::to_string(out) + ", r]");
    adapter.modules[module] = {Var(a, true), Var(b, true), scaling(module, r), 0.f};
  }
  if (adapter.modules.empty()) throw std::runtime_error(source + ": holds no LoRA weights");
  return adapter;
}

void detach_lora(const LinearList& linears) {
  for (const auto& [name, linear] : linears) linear->lora.reset();
}

void attach_lora(const LinearList& linears, const LoraAdapter& adapter) {
  for (const auto& [module, w] : adapter.modules) find_linear(linears, module);  // all exist
  detach_lora(linears);
  for (const auto& [module, w] : adapter.modules) {
    Linear& linear = find_linear(linears, module);
    Device device = linear.weight.value().device();
    for (Var v : {w.a, w.b})
      if (v.value().device() != device) v.mutable_value() = v.value().to(device);
    linear.lora = std::make_shared<const LoraWeights>(w);
  }
}

void merge_lora(const LinearList& linears) {
  for (const auto& [name, linear] : linears) {
    if (!linear->lora) continue;
    const LoraWeights& w = *linear->lora;
    Tensor update = ops::matmul(w.b.value(), false, w.a.value(), false);  // [out, in]
    ops::axpy(w.scaling, update, linear->weight.mutable_value());
    linear->lora.reset();
  }
}

void freeze(const ParamList& params) {
  for (const auto& [name, v] : params) {
    v.set_requires_grad(false);
    v.clear_grad();
  }
}

std::string weights_checksum(const ParamList& params) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a, 64 bits
  auto mix = [&h](const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  };
  for (const auto& [name, t] : param_tensors(params)) {
    mix(name.data(), name.size());
    for (int64_t d : t.shape()) mix(&d, sizeof d);
    Tensor cpu = t.to(Device::cpu);
    mix(cpu.raw(), cpu.nbytes());
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return std::string("fnv1a64:") + hex;
}

}  // namespace qkv::nn
