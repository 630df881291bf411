// LoRA (Hu et al. 2021) as Hugging Face peft's LoRA Linear defines it: a frozen Linear
// y = W x + b gains a low-rank update
//   y += scaling * B (A dropout(x)),   A [r, in], B [out, r],
// scaling = alpha / r (rsLoRA, Kalajdzievski 2023: alpha / sqrt(r)). A new adapter starts with
// A ~ kaiming_uniform(a = sqrt(5)) = U(+-1 / sqrt(in)) and B = 0, so it leaves the model as it
// was. Merging folds the update into the weight: W += scaling * B A.
//
// Modules are named as the model's parameters without ".weight" (model.layers.0.self_attn.q_proj,
// vit.encoder.layer.0.attention.attention.query), which are Hugging Face's names, so peft's
// rules apply unchanged: a target matches a module whose name is the target or ends with
// "." + target, and "all-linear" matches every hidden Linear (never the output layer, which
// the models' linears() do not list). Adapter tensors carry peft's keys:
//   base_model.model.<module>.lora_A.weight, base_model.model.<module>.lora_B.weight
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "config/options.h"
#include "io/safetensors.h"
#include "nn/layers.h"

namespace qkv::nn {

struct LoraOptions {
  int64_t rank = 0;  // 0: no LoRA
  double alpha = 0;  // 0: rank
  float dropout = 0.f;
  // Module names or name endings, or "all-linear"; empty: the model family's default.
  std::vector<std::string> targets;
  bool rslora = false;

  bool enabled() const { return rank > 0; }
  double alpha_or_rank() const { return alpha > 0 ? alpha : double(rank); }
  // alpha / r, or alpha / sqrt(r) with rslora, for an update of rank r.
  float scaling(int64_t r) const;
  // lora-rank, lora-alpha, lora-dropout, lora-targets, lora-rslora.
  void bind(Options& options);
  // Throws std::invalid_argument naming the first impossible option.
  void check() const;
};

// One adapter: an update per module.
struct LoraAdapter {
  std::string name;  // how commands select it (an adapter directory's name by default)
  std::map<std::string, LoraWeights> modules;
  // The A and B of every module under peft's keys (the trainable parameters).
  ParamList params() const;
  int64_t parameter_count() const;
};

// The targets with comma-separated lists split into their items (empty items dropped).
std::vector<std::string> split_lora_targets(const std::vector<std::string>& targets);

// peft's key of module's lora_A ("A") or lora_B ("B") weight.
std::string lora_key(const std::string& module, char which);

// The modules of `linears` that `targets` name (comma-separated lists allowed), in the model's
// order. Throws std::invalid_argument naming a target that matches no module (listing the
// names the model has).
std::vector<std::string> match_lora_targets(const LinearList& linears,
                                            const std::vector<std::string>& targets);

// A new adapter for the modules `options.targets` names (after match_lora_targets), on the
// layers' device. Throws std::invalid_argument for a rank above a layer's min(in, out).
LoraAdapter new_lora_adapter(const LinearList& linears, const LoraOptions& options, Rng& rng);

// The adapter held by peft-keyed `tensors` (from `source`), each module's scaling given by
// scaling(module, r). Throws std::runtime_error naming source and the tensor for a key that
// is not peft's, a module `linears` lacks, a missing A or B, or shapes that do not fit.
LoraAdapter lora_adapter_from_tensors(
    const NamedTensors& tensors, const LinearList& linears,
    const std::function<float(const std::string& module, int64_t rank)>& scaling,
    const std::string& source);

// Makes `adapter` the update of its modules (moving its tensors to the layers' device) and
// removes any other update; detach_lora removes them all.
void attach_lora(const LinearList& linears, const LoraAdapter& adapter);
void detach_lora(const LinearList& linears);
// Folds each attached update into its layer's weight (W += scaling B A) and detaches it.
void merge_lora(const LinearList& linears);

// Freezes every parameter of `params` (no gradients, no optimizer state).
void freeze(const ParamList& params);
// A checksum of the parameters' names, shapes and values ("fnv1a64:" and 16 hex digits): it
// tells whether an adapter was trained on these weights.
std::string weights_checksum(const ParamList& params);

}  // namespace qkv::nn
