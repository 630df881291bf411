#include "convert/hf_llama.h"

#include <algorithm>
#include <set>

#include "convert/hf_causal_lm.h"

namespace qkv::convert {

namespace {

using nlohmann::json;
using nlohmann::ordered_json;

const char* kArchitecture = "LlamaForCausalLM";

// clang-format off
// The keys config_from_hf reads and checks.
const std::set<std::string> kReadKeys = {
    "architectures", "model_type", "vocab_size", "hidden_size", "intermediate_size",
    "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "hidden_act",
    "max_position_embeddings", "rms_norm_eps", "rope_theta", "rope_parameters", "rope_scaling",
    "attention_bias", "mlp_bias", "tie_word_embeddings", "bos_token_id", "eos_token_id",
    "sliding_window", "use_sliding_window", "layer_types", "_attn_implementation",
    "attn_implementation", "rope_interleaved"};

// Keys that do not change what the model computes: bookkeeping, generation defaults and
// training-only settings of transformers' PretrainedConfig and LlamaConfig. (pretraining_tp > 1
// only splits each projection into slices whose results are added: the same function.)
const std::set<std::string> kHarmlessKeys = {
    "_name_or_path", "torch_dtype", "dtype", "transformers_version", "use_cache",
    "initializer_range", "pad_token_id", "pretraining_tp", "attention_dropout", "return_dict",
    "output_hidden_states", "output_attentions", "torchscript", "use_bfloat16", "tf_legacy_loss",
    "pruned_heads", "chunk_size_feed_forward", "is_encoder_decoder", "is_decoder",
    "add_cross_attention", "tie_encoder_decoder", "cross_attention_hidden_size", "max_length",
    "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups",
    "diversity_penalty", "temperature", "top_k", "top_p", "typical_p", "repetition_penalty",
    "length_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "bad_words_ids",
    "num_return_sequences", "output_scores", "return_dict_in_generate", "forced_bos_token_id",
    "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty",
    "suppress_tokens", "begin_suppress_tokens", "finetuning_task", "id2label", "label2id",
    "tokenizer_class", "prefix", "sep_token_id", "decoder_start_token_id",
    "task_specific_params", "problem_type", "is_llama_config"};
// clang-format on

// Attention implementations that compute the standard softmax(q k^T / sqrt(Dh)) v.
const std::set<std::string> kStandardAttention = {"eager", "sdpa", "flash_attention_2",
                                                  "flash_attention_3", "flex_attention"};

[[noreturn]] void refuse(const JsonFile& cfg, const std::string& key, const std::string& why) {
  std::string value = cfg.json().contains(key) ? cfg.json().at(key).dump() : "absent";
  throw std::runtime_error(cfg.path() + ": \"" + key + "\": " + value + " is not supported (" +
                           why + ")");
}

void check_keys(const JsonFile& cfg) {
  for (const auto& [key, value] : cfg.json().items())
    if (!kReadKeys.count(key) && !kHarmlessKeys.count(key))
      refuse(cfg, key,
             "a key qkv's Llama conversion does not know, which may change the computation; it "
             "reads the architecture's keys and ignores only bookkeeping and generation keys "
             "such as torch_dtype");
  if (cfg.has("rope_scaling")) refuse(cfg, "rope_scaling", "qkv's RoPE has no scaling");
  if (cfg.has("sliding_window")) refuse(cfg, "sliding_window", "qkv attends to every position");
  if (cfg.get<bool>("use_sliding_window", false))
    refuse(cfg, "use_sliding_window", "qkv attends to every position");
  if (cfg.get<bool>("rope_interleaved", false))
    refuse(cfg, "rope_interleaved", "Llama's RoPE rotates halves");
  for (const char* key : {"_attn_implementation", "attn_implementation"})
    if (cfg.has(key) && !kStandardAttention.count(cfg.require<std::string>(key)))
      refuse(cfg, key, "qkv computes the standard attention only");
  if (cfg.has("layer_types"))
    for (const auto& type : cfg.require<std::vector<std::string>>("layer_types"))
      if (type != "full_attention")
        refuse(cfg, "layer_types", "every layer must be full_attention");
}

// rope_theta, or transformers 5's rope_parameters {"rope_type": "default", "rope_theta": ...}.
double rope_theta_from(const JsonFile& cfg) {
  double theta = cfg.get<double>("rope_theta", 10000.0);
  if (!cfg.has("rope_parameters")) return theta;
  const json& rope = cfg.json()["rope_parameters"];
  if (!rope.is_object()) refuse(cfg, "rope_parameters", "expected an object");
  for (const auto& [key, value] : rope.items()) {
    if (key == "rope_theta" && value.is_number()) {
      theta = value.get<double>();
    } else if (key != "rope_type" || value != "default") {
      refuse(cfg, "rope_parameters", "qkv's RoPE takes rope_type default and rope_theta only");
    }
  }
  return theta;
}

nn::GptConfig config_from_hf(const JsonFile& cfg) {
  if (cfg.has("architectures")) {
    auto archs = cfg.require<std::vector<std::string>>("architectures");
    if (std::find(archs.begin(), archs.end(), kArchitecture) == archs.end())
      throw std::runtime_error(cfg.path() + ": architectures " +
                               cfg.json()["architectures"].dump() + " is not LlamaForCausalLM");
  }
  check_keys(cfg);
  // The defaults are LlamaConfig's, as transformers reads a config.json that omits a key.
  nn::GptConfig c;
  c.positions = "rope", c.norm = "rmsnorm", c.mlp = "swiglu", c.dropout = 0.f;
  c.vocab_size = cfg.get<int64_t>("vocab_size", 32000);
  c.d_model = cfg.get<int64_t>("hidden_size", 4096);
  c.layers = cfg.get<int64_t>("num_hidden_layers", 32);
  c.heads = cfg.get<int64_t>("num_attention_heads", 32);
  // kv-heads 0 (multi-head) when there are as many as query heads, as qkv writes it.
  c.kv_heads = cfg.get<int64_t>("num_key_value_heads", c.heads);
  if (c.kv_heads == c.heads) c.kv_heads = 0;
  c.context_length = cfg.get<int64_t>("max_position_embeddings", 2048);
  c.norm_eps = cfg.get<float>("rms_norm_eps", 1e-6f);
  c.rope_theta = rope_theta_from(cfg);
  c.tie_embeddings = cfg.get<bool>("tie_word_embeddings", false);
  bool attention_bias = cfg.get<bool>("attention_bias", false);
  if (cfg.get<bool>("mlp_bias", false) != attention_bias)
    refuse(cfg, "mlp_bias",
           "qkv has one `bias` for the attention and MLP projections: attention_bias is " +
               std::string(attention_bias ? "true" : "false"));
  c.bias = attention_bias;
  std::string act = cfg.get<std::string>("hidden_act", "silu");
  if (act != "silu" && act != "swish") refuse(cfg, "hidden_act", "qkv's SwiGLU gates with silu");
  if (c.heads > 0 && cfg.has("head_dim") && cfg.require<int64_t>("head_dim") != c.head_dim())
    refuse(cfg, "head_dim",
           "it must be hidden_size / num_attention_heads = " + std::to_string(c.head_dim()));
  // d-ff 0 (Llama's rule, 8/3 d up to a multiple of 64) when intermediate_size follows it, so
  // that qkv -> hf -> qkv gives the same config.yaml.
  nn::GptConfig by_rule = c;
  by_rule.d_ff = 0;
  c.d_ff = cfg.get<int64_t>("intermediate_size", 11008);
  if (c.d_ff == by_rule.ff_width()) c.d_ff = 0;
  try {
    c.check(cfg.path());
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(e.what());
  }
  return c;
}

NamedTensors weights_from_hf(CheckpointTensors& hf, const nn::Gpt& model) {
  NamedTensors out;
  for (const auto& [name, param] : model.params())
    out.emplace_back(name, hf.take(name, param.value().shape()));
  for (int64_t i = 0; i < model.config().layers; ++i)  // older checkpoints' RoPE table
    hf.skip("model.layers." + std::to_string(i) + ".self_attn.rotary_emb.inv_freq");
  if (model.config().tie_embeddings) hf.skip("lm_head.weight");  // a tied copy, when saved
  return out;
}

ordered_json config_to_hf(const nn::GptConfig& c) {
  auto id = [](int32_t id) { return id >= 0 ? ordered_json(id) : ordered_json(); };
  return {{"architectures", {kArchitecture}},
          {"model_type", "llama"},
          {"vocab_size", c.vocab_size},
          {"hidden_size", c.d_model},
          {"intermediate_size", c.ff_width()},
          {"num_hidden_layers", c.layers},
          {"num_attention_heads", c.heads},
          {"num_key_value_heads", c.kv_head_count()},
          {"head_dim", c.head_dim()},
          {"hidden_act", "silu"},
          {"max_position_embeddings", c.context_length},
          {"rms_norm_eps", json_float(c.norm_eps)},
          {"rope_theta", c.rope_theta},
          {"rope_scaling", nullptr},
          {"attention_bias", c.bias},
          {"mlp_bias", c.bias},
          {"attention_dropout", 0.0},
          {"tie_word_embeddings", c.tie_embeddings},
          {"bos_token_id", id(c.bos_id)},
          {"eos_token_id", id(c.eos_id)},
          {"use_cache", true},
          {"torch_dtype", "float32"}};
}

}  // namespace

std::vector<std::string> llama_from_hf(const std::string& hf_dir, const std::string& qkv_dir) {
  check_output_dir(qkv_dir);
  JsonFile cfg = JsonFile::read(hf_dir + "/config.json");
  return lm_from_hf(hf_dir, cfg, config_from_hf(cfg), "sentencepiece", weights_from_hf, qkv_dir,
                    {});
}

std::vector<std::string> llama_to_hf(const std::string& qkv_dir, const std::string& hf_dir,
                                     const std::string& which) {
  check_output_dir(hf_dir);
  model_dir::LanguageModel m = model_dir::load_language_model_dir(qkv_dir, which);
  const nn::GptConfig& c = m.model->config();
  require_option(qkv_dir, kArchitecture, "positions", c.positions, {"rope"});
  require_option(qkv_dir, kArchitecture, "norm", c.norm, {"rmsnorm"});
  require_option(qkv_dir, kArchitecture, "mlp", c.mlp, {"swiglu"});
  NamedTensors weights = nn::param_tensors(m.model->params());
  std::vector<std::string> notes;
  if (c.dropout > 0)
    notes.push_back("dropout " + std::to_string(c.dropout) +
                    " is not written: LlamaForCausalLM has no residual dropout");
  write_hf_lm_folder(qkv_dir, m, hf_dir, config_to_hf(c), weights);
  return notes;
}

}  // namespace qkv::convert
