#include "convert/peft_config.h"

#include <algorithm>
#include <cmath>
#include <set>

namespace qkv::convert {

using model_dir::AdapterConfig;

std::string last_component(const std::string& name) {
  return name.substr(name.rfind('.') + 1);
}

bool selects(const std::string& target, const std::string& module) {
  return target == "all-linear" || module == target || module.ends_with("." + target);
}

namespace {

// peft's target_modules for the `updated` modules among the model's `all`: for each, its
// shortest ending (of whole components) that selects no module outside `updated`.
std::vector<std::string> covering_targets(const std::set<std::string>& updated,
                                          const std::vector<std::string>& all) {
  std::vector<std::string> out;
  for (const auto& module : all) {
    if (!updated.count(module)) continue;
    std::string target = module;
    for (size_t dot = module.rfind('.'); dot != std::string::npos && dot > 0;
         dot = module.rfind('.', dot - 1)) {
      std::string ending = module.substr(dot + 1);
      if (std::none_of(all.begin(), all.end(), [&](const std::string& other) {
            return !updated.count(other) && selects(ending, other);
          })) {
        target = ending;
        break;
      }
    }
    if (std::find(out.begin(), out.end(), target) == out.end()) out.push_back(target);
  }
  return out;
}

// peft's rank_pattern / alpha_pattern for the modules whose value is not `fallback`: keyed by
// their last name component where every module ending so has that value, else by the whole
// name (dots escaped: peft reads keys as regular expressions).
template <class T>
std::vector<std::pair<std::string, T>> patterns(const std::map<std::string, T>& values,
                                                T fallback) {
  std::map<std::string, T> out;
  for (const auto& [module, v] : values) {
    if (v == fallback) continue;
    std::string ending = last_component(module);
    bool shared = std::all_of(values.begin(), values.end(), [&](const auto& other) {
      return other.second == v || last_component(other.first) != ending;
    });
    std::string key;
    for (char c : module) key += c == '.' ? std::string("\\.") : std::string(1, c);
    out[shared ? ending : key] = v;
  }
  return {out.begin(), out.end()};
}

}  // namespace

double rank_root(int64_t r, bool rslora) {
  return rslora ? std::sqrt(double(r)) : double(r);
}

double alpha_of(const AdapterConfig& c, const std::string& module) {
  // AdapterConfig::scaling at rank 1 is the alpha; lora_alpha itself where they agree.
  float alpha = c.scaling(module, 1);
  return alpha == float(c.options.alpha_or_rank()) ? c.options.alpha_or_rank() : double(alpha);
}

AdapterConfig fit_adapter_config(AdapterConfig c, const std::map<std::string, LoraUpdate>& updates,
                                 const std::vector<std::string>& all) {
  std::set<std::string> updated;
  std::map<std::string, int64_t> ranks;
  std::map<std::string, double> alphas;
  for (const auto& [module, u] : updates) {
    updated.insert(module);
    ranks[module] = u.rank;
    alphas[module] = u.alpha;
  }
  c.options.targets = covering_targets(updated, all);
  c.rank_pattern = patterns(ranks, c.options.rank);
  c.alpha_pattern = patterns(alphas, c.options.alpha_or_rank());
  return c;
}

bool fold_scaling(Tensor& b, int64_t begin, int64_t end, float wanted, float scaling) {
  if (wanted == scaling) return false;
  float f = wanted / scaling;
  float* p = b.data<float>();
  for (int64_t i = begin * b.size(1); i < end * b.size(1); ++i) p[i] *= f;
  return true;
}

}  // namespace qkv::convert
