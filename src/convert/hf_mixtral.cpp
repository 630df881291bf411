#include "convert/hf_mixtral.h"

#include "convert/hf_causal_lm.h"
#include "convert/hf_llama.h"

namespace qkv::convert {

namespace {

using nlohmann::ordered_json;

const char* kArchitecture = "MixtralForCausalLM";

// num_local_experts and num_experts_per_tok: every layer a MoE layer.
void read_experts(const JsonFile& cfg, nn::GptConfig& c) {
  c.moe.experts = cfg.get<int64_t>("num_local_experts", 8);
  c.moe.top_k = cfg.get<int64_t>("num_experts_per_tok", 2);
  c.moe.every = 1;
  if (c.moe.experts < 1)
    refuse_config_key(cfg, "num_local_experts", "a Mixtral layer needs at least one expert");
  if (c.moe.top_k > c.moe.experts)
    refuse_config_key(cfg, "num_experts_per_tok",
                      "a token cannot pick more than num_local_experts = " +
                          std::to_string(c.moe.experts) + " experts");
  if (c.moe.top_k < 2)
    refuse_config_key(cfg, "num_experts_per_tok",
                      "Mixtral weighs a lone expert by 1, qkv's top-1 routing (Switch's) by its "
                      "probability");
}

LlamaVariant mixtral_variant() {
  LlamaVariant v;
  v.architecture = kArchitecture, v.model_type = "mixtral";
  v.d_ff = 14336, v.kv_heads = 8, v.context_length = 4096 * 32;
  v.norm_eps = 1e-5f, v.rope_theta = 1e6;
  v.read_keys = {"num_local_experts", "num_experts_per_tok"};
  // Training only: the aux loss weight, router input noise (applied only while training) and
  // whether the forward pass returns the router logits.
  v.ignored_keys = {"router_aux_loss_coef", "router_jitter_noise", "output_router_logits"};
  v.read = read_experts;
  v.write = [](const nn::GptConfig& c, ordered_json& config) {
    config["sliding_window"] = nullptr;
    config["num_local_experts"] = c.moe.experts;
    config["num_experts_per_tok"] = c.moe.top_k;
  };
  return v;
}

// Layer `layer`'s experts from transformers 5's fused tensors, by qkv's names; none when the
// layer is stored in the classic layout.
void split_fused_experts(CheckpointTensors& hf, const nn::GptConfig& c, int64_t layer,
                         std::map<std::string, Tensor>& out) {
  std::string hf_prefix = "model.layers." + std::to_string(layer) + ".mlp.";
  if (!hf.has(hf_prefix + "experts.gate_up_proj") && !hf.has(hf_prefix + "experts.down_proj"))
    return;
  const int64_t e = c.moe.experts, d = c.d_model, ff = c.ff_width();
  std::string qkv_prefix = "model.layers." + std::to_string(layer) + ".block_sparse_moe.";
  out[qkv_prefix + "gate.weight"] = hf.take(hf_prefix + "gate.weight", {e, d});
  Tensor gate_up = hf.take(hf_prefix + "experts.gate_up_proj", {e, 2 * ff, d}).reshape({-1, d});
  Tensor down = hf.take(hf_prefix + "experts.down_proj", {e, d, ff}).reshape({-1, ff});
  for (int64_t m = 0; m < e; ++m) {
    std::string expert = qkv_prefix + "experts." + std::to_string(m) + ".";
    out[expert + "w1.weight"] = gate_up.slice_rows(2 * m * ff, (2 * m + 1) * ff);
    out[expert + "w3.weight"] = gate_up.slice_rows((2 * m + 1) * ff, (2 * m + 2) * ff);
    out[expert + "w2.weight"] = down.slice_rows(m * d, (m + 1) * d);
  }
}

NamedTensors weights_from_hf(CheckpointTensors& hf, const nn::Gpt& model) {
  std::map<std::string, Tensor> fused;
  for (int64_t layer = 0; layer < model.config().layers; ++layer)
    split_fused_experts(hf, model.config(), layer, fused);
  return llama_weights_from_hf(hf, model, fused);
}

}  // namespace

std::vector<std::string> mixtral_from_hf(const std::string& hf_dir, const std::string& qkv_dir) {
  return llama_variant_from_hf(hf_dir, qkv_dir, mixtral_variant(), weights_from_hf);
}

std::vector<std::string> mixtral_to_hf(const std::string& qkv_dir, const std::string& hf_dir,
                                       const std::string& which) {
  auto check = [&](const nn::GptConfig& c, std::vector<std::string>& notes) {
    if (!c.moe.enabled())
      throw std::runtime_error(qkv_dir + ": " + kArchitecture +
                               " needs moe-experts of at least 1, not 0 (a dense model "
                               "converts as LlamaForCausalLM)");
    require_option(qkv_dir, kArchitecture, "moe-every", std::to_string(c.moe.every), {"1"});
    if (c.moe.top_k < 2)
      throw std::runtime_error(qkv_dir + ": " + kArchitecture +
                               " needs moe-top-k of at least 2, not " +
                               std::to_string(c.moe.top_k) +
                               " (it weighs a lone expert by 1, qkv's top-1 routing by its "
                               "probability)");
    require_option(qkv_dir, kArchitecture, "bias", c.bias ? "true" : "false", {"false"});
    if (c.moe.capacity_factor > 0)
      notes.push_back("moe-capacity-factor " + std::to_string(c.moe.capacity_factor) +
                      " is not written: it only limits training, and " + kArchitecture +
                      " routes every token");
  };
  return llama_variant_to_hf(qkv_dir, hf_dir, which, mixtral_variant(), check);
}

}  // namespace qkv::convert
