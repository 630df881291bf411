#include "convert/hf_llama.h"

#include <algorithm>
#include <set>

#include "convert/hf_causal_lm.h"

namespace qkv::convert {

namespace {

using nlohmann::json;
using nlohmann::ordered_json;

// clang-format off
// The keys every variant reads and checks (llama_config_from_hf).
const std::set<std::string> kReadKeys = {
    "architectures", "model_type", "vocab_size", "hidden_size", "intermediate_size",
    "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "hidden_act",
    "max_position_embeddings", "rms_norm_eps", "rope_theta", "rope_parameters", "rope_scaling",
    "tie_word_embeddings", "bos_token_id", "eos_token_id", "sliding_window", "use_sliding_window",
    "layer_types", "_attn_implementation", "attn_implementation", "rope_interleaved"};

// Keys that do not change what the model computes: bookkeeping, generation defaults and
// training-only settings of transformers' PretrainedConfig. (pretraining_tp > 1 only splits
// each projection into slices whose results are added: the same function.)
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
    "task_specific_params", "problem_type"};
// clang-format on

// Attention implementations that compute the standard softmax(q k^T / sqrt(Dh)) v.
const std::set<std::string> kStandardAttention = {"eager", "sdpa", "flash_attention_2",
                                                  "flash_attention_3", "flex_attention"};

void check_keys(const JsonFile& cfg, const LlamaVariant& v) {
  for (const auto& [key, value] : cfg.json().items())
    if (!kReadKeys.count(key) && !kHarmlessKeys.count(key) && !v.read_keys.count(key) &&
        !v.ignored_keys.count(key))
      refuse_config_key(cfg, key,
                        "a key qkv's " + v.architecture +
                            " conversion does not know, which may change the computation; it "
                            "reads the architecture's keys and ignores only bookkeeping, "
                            "generation and training keys such as torch_dtype");
  if (cfg.get<bool>("use_sliding_window", false))
    refuse_config_key(cfg, "use_sliding_window", "qkv attends to every position");
  if (cfg.get<bool>("rope_interleaved", false))
    refuse_config_key(cfg, "rope_interleaved", "Llama's RoPE rotates halves");
  for (const char* key : {"_attn_implementation", "attn_implementation"})
    if (cfg.has(key) && !kStandardAttention.count(cfg.require<std::string>(key)))
      refuse_config_key(cfg, key, "qkv computes the standard attention only");
  if (cfg.has("layer_types"))
    for (const auto& type : cfg.require<std::vector<std::string>>("layer_types"))
      if (type != "full_attention")
        refuse_config_key(cfg, "layer_types", "every layer must be full_attention");
}

// One RoPE object of config.json, rope_scaling {"rope_type" (or the older "type"), "factor", ...}
// or transformers 5's rope_parameters (which holds rope_theta too), into c.
void read_rope_object(const JsonFile& cfg, const std::string& key, nn::GptConfig& c) {
  const json& rope = cfg.json()[key];
  if (!rope.is_object()) refuse_config_key(cfg, key, "expected an object");
  auto number = [&](const char* name) {
    if (!rope.contains(name) || !rope[name].is_number())
      refuse_config_key(cfg, key, std::string("needs a number \"") + name + "\"");
    return rope[name].get<double>();
  };
  std::string type = "default";
  for (const char* name : {"type", "rope_type"})  // rope_type, where both are given
    if (rope.contains(name)) {
      if (!rope[name].is_string())
        refuse_config_key(cfg, key, std::string("\"") + name + "\" must be a string");
      type = rope[name].get<std::string>();
    }
  std::set<std::string> known = {"rope_type", "type", "rope_theta"};
  if (type == "linear" || type == "llama3") {
    c.rope_scaling = type;
    c.rope_scaling_factor = number("factor");
    known.insert("factor");
  } else if (type != "default") {
    refuse_config_key(cfg, key,
                      "rope type " + type + ": qkv's RoPE takes default, linear and llama3");
  }
  if (type == "llama3") {
    c.rope_low_freq_factor = number("low_freq_factor");
    c.rope_high_freq_factor = number("high_freq_factor");
    c.rope_original_context = int64_t(number("original_max_position_embeddings"));
    known.insert({"low_freq_factor", "high_freq_factor", "original_max_position_embeddings"});
  }
  if (rope.contains("rope_theta")) c.rope_theta = number("rope_theta");
  for (const auto& [name, value] : rope.items())
    if (!known.count(name))
      refuse_config_key(cfg, key, "\"" + name + "\" is not read for rope type " + type);
}

// rope_theta, then rope_scaling and rope_parameters (transformers 5's), where present.
void read_rope(const JsonFile& cfg, double theta, nn::GptConfig& c) {
  c.rope_theta = cfg.get<double>("rope_theta", theta);
  for (const char* key : {"rope_scaling", "rope_parameters"})
    if (cfg.has(key)) read_rope_object(cfg, key, c);
}

// rope_scaling as Hugging Face's Llama reads it: null, or the scaling's type and numbers.
ordered_json rope_scaling_to_hf(const nn::GptConfig& c) {
  if (c.rope_scaling == "none") return nullptr;
  ordered_json rope = {{"rope_type", c.rope_scaling}, {"factor", c.rope_scaling_factor}};
  if (c.rope_scaling == "llama3")
    rope.update({{"low_freq_factor", c.rope_low_freq_factor},
                 {"high_freq_factor", c.rope_high_freq_factor},
                 {"original_max_position_embeddings", c.rope_original_context}});
  return rope;
}

// Llama's own keys: attention_bias and mlp_bias, one `bias` in qkv.
void read_llama_bias(const JsonFile& cfg, nn::GptConfig& c) {
  bool attention_bias = cfg.get<bool>("attention_bias", false);
  if (cfg.get<bool>("mlp_bias", false) != attention_bias)
    refuse_config_key(cfg, "mlp_bias",
                      "qkv has one `bias` for the attention and MLP projections: attention_bias "
                      "is " +
                          std::string(attention_bias ? "true" : "false"));
  c.bias = attention_bias;
}

LlamaVariant llama_variant() {
  LlamaVariant v;
  v.architecture = "LlamaForCausalLM", v.model_type = "llama";
  v.read_keys = {"attention_bias", "mlp_bias"};
  v.ignored_keys = {"is_llama_config"};
  v.read = read_llama_bias;
  v.write = [](const nn::GptConfig& c, ordered_json& config) {
    config["attention_bias"] = c.bias, config["mlp_bias"] = c.bias;
  };
  return v;
}

}  // namespace

void refuse_config_key(const JsonFile& cfg, const std::string& key, const std::string& why) {
  std::string value = cfg.json().contains(key) ? cfg.json().at(key).dump() : "absent";
  throw std::runtime_error(cfg.path() + ": \"" + key + "\": " + value + " is not supported (" +
                           why + ")");
}

nn::GptConfig llama_config_from_hf(const JsonFile& cfg, const LlamaVariant& v) {
  if (cfg.has("architectures")) {
    auto archs = cfg.require<std::vector<std::string>>("architectures");
    if (std::find(archs.begin(), archs.end(), v.architecture) == archs.end())
      throw std::runtime_error(cfg.path() + ": architectures " +
                               cfg.json()["architectures"].dump() + " is not " + v.architecture);
  }
  check_keys(cfg, v);
  // The defaults are the config class's, as transformers reads a config.json that omits a key.
  nn::GptConfig c;
  c.positions = "rope", c.norm = "rmsnorm", c.mlp = "swiglu", c.dropout = 0.f, c.bias = false;
  c.vocab_size = cfg.get<int64_t>("vocab_size", 32000);
  c.d_model = cfg.get<int64_t>("hidden_size", 4096);
  c.layers = cfg.get<int64_t>("num_hidden_layers", 32);
  c.heads = cfg.get<int64_t>("num_attention_heads", 32);
  // kv-heads 0 (multi-head) when there are as many as query heads, as qkv writes it.
  c.kv_heads = cfg.get<int64_t>("num_key_value_heads", v.kv_heads > 0 ? v.kv_heads : c.heads);
  if (c.kv_heads == c.heads) c.kv_heads = 0;
  c.context_length = cfg.get<int64_t>("max_position_embeddings", v.context_length);
  c.norm_eps = cfg.get<float>("rms_norm_eps", v.norm_eps);
  read_rope(cfg, v.rope_theta, c);
  c.tie_embeddings = cfg.get<bool>("tie_word_embeddings", false);
  // A window that covers every position is full attention.
  if (cfg.has("sliding_window") && cfg.require<int64_t>("sliding_window") < c.context_length)
    refuse_config_key(cfg, "sliding_window",
                      "qkv attends to every position: the window must cover "
                      "max_position_embeddings " +
                          std::to_string(c.context_length));
  std::string act = cfg.get<std::string>("hidden_act", "silu");
  if (act != "silu" && act != "swish")
    refuse_config_key(cfg, "hidden_act", "qkv's SwiGLU gates with silu");
  if (c.heads > 0 && cfg.has("head_dim") && cfg.require<int64_t>("head_dim") != c.head_dim())
    refuse_config_key(
        cfg, "head_dim",
        "it must be hidden_size / num_attention_heads = " + std::to_string(c.head_dim()));
  // d-ff 0 (Llama's rule, 8/3 d up to a multiple of 64) when intermediate_size follows it, so
  // that qkv -> hf -> qkv gives the same config.yaml.
  nn::GptConfig by_rule = c;
  by_rule.d_ff = 0;
  c.d_ff = cfg.get<int64_t>("intermediate_size", v.d_ff);
  if (c.d_ff == by_rule.ff_width()) c.d_ff = 0;
  if (v.read) v.read(cfg, c);
  try {
    c.check(cfg.path());
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(e.what());
  }
  return c;
}

NamedTensors llama_weights_from_hf(CheckpointTensors& hf, const nn::Gpt& model,
                                   const std::map<std::string, Tensor>& given) {
  NamedTensors out;
  for (const auto& [name, param] : model.params()) {
    auto it = given.find(name);
    out.emplace_back(name, it != given.end() ? it->second : hf.take(name, param.value().shape()));
  }
  for (int64_t i = 0; i < model.config().layers; ++i)  // older checkpoints' RoPE table
    hf.skip("model.layers." + std::to_string(i) + ".self_attn.rotary_emb.inv_freq");
  if (model.config().tie_embeddings) hf.skip("lm_head.weight");  // a tied copy, when saved
  return out;
}

std::vector<std::string> llama_variant_from_hf(
    const std::string& hf_dir, const std::string& qkv_dir, const LlamaVariant& variant,
    const std::function<NamedTensors(CheckpointTensors&, const nn::Gpt&)>& weights) {
  check_output_dir(qkv_dir);
  JsonFile cfg = JsonFile::read(hf_dir + "/config.json");
  return lm_from_hf(hf_dir, cfg, llama_config_from_hf(cfg, variant), "sentencepiece", weights,
                    qkv_dir, {});
}

std::vector<std::string> llama_variant_to_hf(
    const std::string& qkv_dir, const std::string& hf_dir, const std::string& which,
    const LlamaVariant& v,
    const std::function<void(const nn::GptConfig&, std::vector<std::string>&)>& check) {
  check_output_dir(hf_dir);
  model_dir::LanguageModel m = model_dir::load_language_model_dir(qkv_dir, which);
  const nn::GptConfig& c = m.model->config();
  require_option(qkv_dir, v.architecture, "positions", c.positions, {"rope"});
  require_option(qkv_dir, v.architecture, "norm", c.norm, {"rmsnorm"});
  require_option(qkv_dir, v.architecture, "mlp", c.mlp, {"swiglu"});
  std::vector<std::string> notes;
  check(c, notes);
  if (c.dropout > 0)
    notes.push_back("dropout " + std::to_string(c.dropout) + " is not written: " + v.architecture +
                    " has no residual dropout");
  auto id = [](int32_t id) { return id >= 0 ? ordered_json(id) : ordered_json(); };
  ordered_json config = {{"architectures", {v.architecture}},
                         {"model_type", v.model_type},
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
                         {"rope_scaling", rope_scaling_to_hf(c)}};
  v.write(c, config);
  config.update({{"attention_dropout", 0.0},
                 {"tie_word_embeddings", c.tie_embeddings},
                 {"bos_token_id", id(c.bos_id)},
                 {"eos_token_id", eos_token_ids(c)},
                 {"use_cache", true},
                 {"torch_dtype", "float32"}});
  write_hf_lm_folder(qkv_dir, m, hf_dir, config, nn::param_tensors(m.model->params()));
  return notes;
}

std::vector<std::string> llama_from_hf(const std::string& hf_dir, const std::string& qkv_dir) {
  return llama_variant_from_hf(
      hf_dir, qkv_dir, llama_variant(),
      [](CheckpointTensors& hf, const nn::Gpt& model) { return llama_weights_from_hf(hf, model); });
}

std::vector<std::string> llama_to_hf(const std::string& qkv_dir, const std::string& hf_dir,
                                     const std::string& which) {
  return llama_variant_to_hf(qkv_dir, hf_dir, which, llama_variant(),
                             [&](const nn::GptConfig& c, auto&) {
                               require_option(qkv_dir, "LlamaForCausalLM", "moe-experts",
                                              std::to_string(c.moe.experts), {"0"});
                             });
}

}  // namespace qkv::convert
