// A LoRA adapter directory (nn/lora.h), in the files Hugging Face peft writes and reads:
//   adapter_config.json             peft's LoraConfig: peft_type LORA, r, lora_alpha,
//                                   lora_dropout, target_modules, use_rslora, rank_pattern,
//                                   alpha_pattern, base_model_name_or_path (the base model's
//                                   directory), task_type, ...
//   adapter_model.safetensors       base_model.model.<module>.lora_A.weight [r, in] and
//                                   .lora_B.weight [out, r]; metadata "format": "pt" and
//                                   "qkv-base-checksum" (nn::weights_checksum of the base)
//   adapter_model.best.safetensors  training: the adapter with the best validation score
// A LoRA training run writes one (with train.yaml, metrics.jsonl and checkpoint/, as any run);
// the base model stays in its own directory, untouched.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "io/safetensors.h"
#include "nn/lora.h"

namespace qkv::model_dir {

inline constexpr const char* kAdapterConfigFile = "adapter_config.json";
inline constexpr const char* kAdapterWeightsFile = "adapter_model.safetensors";
inline constexpr const char* kBestAdapterWeightsFile = "adapter_model.best.safetensors";
inline constexpr const char* kBaseChecksumKey = "qkv-base-checksum";

struct AdapterConfig {
  nn::LoraOptions options;  // r, lora_alpha, lora_dropout, target_modules, use_rslora
  std::string base_model;   // base_model_name_or_path
  std::string task_type;    // peft's: CAUSAL_LM, SEQ_2_SEQ_LM, or "" (none)
  // peft's per-module overrides in the file's order: a module takes the value of the first key
  // that matches it, named key or ending in "." + key (a regular expression, as peft reads it).
  std::vector<std::pair<std::string, int64_t>> rank_pattern;
  std::vector<std::pair<std::string, double>> alpha_pattern;

  // The rank of `module`'s update: r, or its rank_pattern's.
  int64_t rank(const std::string& module) const;
  // The update's scaling for `module` with rank r: alpha (or its pattern's) / r, or / sqrt(r)
  // with use_rslora.
  float scaling(const std::string& module, int64_t r) const;
};

// True when dir holds an adapter_config.json.
bool is_adapter_dir(const std::string& dir);
void write_adapter_config(const std::string& dir, const AdapterConfig& config);
// Throws std::runtime_error naming the file for a missing or malformed file, or a peft option
// qkv does not implement (another peft_type, DoRA, trained biases, modules_to_save).
AdapterConfig read_adapter_config(const std::string& dir);

// which: "best" (adapter_model.best.safetensors when present) or "last".
std::string adapter_weights_path(const std::string& dir, const std::string& which);

// The tensors' metadata for an adapter of a base whose weights have `base_checksum`.
Metadata adapter_metadata(const std::string& base_checksum);

// Loads dir's adapter for the base model `base_dir`, whose hidden linear layers are `linears`
// and whose weights have `base_checksum`; the adapter is named after dir's last component.
// Throws std::runtime_error naming both directories when the adapter records another base,
// and naming the file for anything missing, corrupt or not fitting the model.
nn::LoraAdapter load_adapter(const std::string& dir, const std::string& which,
                             const nn::LinearList& linears, const std::string& base_dir,
                             const std::string& base_checksum);

// Writes a complete adapter directory (created if needed).
void save_adapter(const std::string& dir, const AdapterConfig& config,
                  const nn::LoraAdapter& adapter, const std::string& base_checksum);

}  // namespace qkv::model_dir
