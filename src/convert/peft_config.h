// peft's adapter_config.json for updates whose modules, ranks and scalings convert chose: the
// target_modules that select exactly the updated modules, and the rank_pattern and alpha_pattern
// of the modules whose rank or scaling differ from r and lora_alpha (see peft_adapter.h).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "model_dir/adapter_dir.h"

namespace qkv::convert {

// A written module's update: its rank and the lora_alpha that gives its scaling.
struct LoraUpdate {
  int64_t rank;
  double alpha;
};

// The name's last dot-separated component.
std::string last_component(const std::string& name);
// peft's rule: a target selects a module named as it or ending in "." + it.
bool selects(const std::string& target, const std::string& module);

// r, or sqrt(r) with rsLoRA: the scaling is alpha / rank_root(r).
double rank_root(int64_t r, bool rslora);
// The lora_alpha of `module` in c (its alpha_pattern's, else lora_alpha).
double alpha_of(const model_dir::AdapterConfig& c, const std::string& module);

// c (r, lora_alpha, use_rslora, lora_dropout kept) with target_modules, rank_pattern and
// alpha_pattern made for `updates` among the model's modules `all`. Target modules are each
// module's shortest name ending (of whole components) that selects no module outside
// `updates`; pattern keys are a last name component where every updated module ending so
// shares the value, else the whole name (dots escaped: peft reads keys as regular expressions).
model_dir::AdapterConfig fit_adapter_config(model_dir::AdapterConfig c,
                                            const std::map<std::string, LoraUpdate>& updates,
                                            const std::vector<std::string>& all);

// Multiplies rows [begin, end) of b [out, r] by wanted / scaling when they differ, so that
// scaling * B A is what wanted * B A was; returns whether it did.
bool fold_scaling(Tensor& b, int64_t begin, int64_t end, float wanted, float scaling);

}  // namespace qkv::convert
