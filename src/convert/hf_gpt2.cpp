#include "convert/hf_gpt2.h"

#include <algorithm>
#include <map>

#include "convert/hf_causal_lm.h"
#include "ops/ops.h"

namespace qkv::convert {

namespace {

using nlohmann::ordered_json;

const char* kArchitecture = "GPT2LMHeadModel";

// The per-layer tensors that map one to one: Hugging Face's name after "h.N.", qkv's after
// "model.layers.N.", and whether it is a Conv1D (weight stored [in, out]) or a LayerNorm.
struct LayerTensor {
  const char* hf;
  const char* qkv;
  bool conv1d;
};
constexpr LayerTensor kLayerTensors[] = {{"ln_1", "input_layernorm", false},
                                         {"attn.c_proj", "self_attn.o_proj", true},
                                         {"ln_2", "post_attention_layernorm", false},
                                         {"mlp.c_fc", "mlp.up_proj", true},
                                         {"mlp.c_proj", "mlp.down_proj", true}};
constexpr const char* kQkv[] = {"q_proj", "k_proj", "v_proj"};  // c_attn's column blocks

Tensor transpose(const Tensor& t) {
  return ops::permute(t, {1, 0});
}

nn::GptConfig config_from_hf(const JsonFile& cfg) {
  if (cfg.has("architectures")) {
    auto archs = cfg.require<std::vector<std::string>>("architectures");
    if (std::find(archs.begin(), archs.end(), kArchitecture) == archs.end() &&
        std::find(archs.begin(), archs.end(), "GPT2Model") == archs.end())
      throw std::runtime_error(cfg.path() + ": architectures " +
                               cfg.json()["architectures"].dump() +
                               " is not GPT2LMHeadModel (or GPT2Model)");
  }
  auto refuse = [&](const char* key, bool value, const char* why) {
    if (cfg.get<bool>(key, !value) == value)
      throw std::runtime_error(cfg.path() + ": \"" + key + "\": " + (value ? "true" : "false") +
                               " is not supported (" + why + ")");
  };
  refuse("scale_attn_weights", false, "qkv always scales attention scores by 1/sqrt(head size)");
  refuse("scale_attn_by_inverse_layer_idx", true, "qkv does not scale scores by layer");
  refuse("add_cross_attention", true, "qkv's GPT has no cross-attention");
  // The defaults are GPT2Config's, as transformers reads a config.json that omits a key.
  nn::GptConfig c;
  c.vocab_size = cfg.get<int64_t>("vocab_size", 50257);
  c.context_length = cfg.get<int64_t>("n_positions", 1024);
  c.d_model = cfg.get<int64_t>("n_embd", 768);
  c.layers = cfg.get<int64_t>("n_layer", 12);
  c.heads = cfg.get<int64_t>("n_head", 12);
  c.d_ff = cfg.get<int64_t>("n_inner", 0);  // null: 4 n_embd, as qkv's 0
  std::string act = cfg.get<std::string>("activation_function", "gelu_new");
  if (act == "gelu_new" || act == "gelu_pytorch_tanh" || act == "gelu_fast")
    c.mlp = "gelu_tanh";
  else if (act == "gelu")
    c.mlp = "gelu";
  else
    throw std::runtime_error(cfg.path() + ": activation_function \"" + act +
                             "\" is not supported (gelu_new, gelu_pytorch_tanh, gelu_fast, gelu)");
  c.norm_eps = cfg.get<float>("layer_norm_epsilon", 1e-5f);
  c.tie_embeddings = cfg.get<bool>("tie_word_embeddings", true);
  c.dropout = cfg.get<float>("resid_pdrop", 0.1f);
  c.positions = "learned", c.norm = "layernorm", c.bias = true, c.kv_heads = 0;
  try {
    c.check(cfg.path());
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(e.what());
  }
  return c;
}

NamedTensors weights_from_hf(CheckpointTensors& hf, const nn::Gpt& model) {
  const nn::GptConfig& c = model.config();
  const int64_t d = c.d_model, ff = c.ff_width(), v = c.vocab_size;
  const std::string p = hf.has("transformer.wte.weight") ? "transformer." : "";
  NamedTensors out;
  out.emplace_back("model.embed_tokens.weight", hf.take(p + "wte.weight", {v, d}));
  out.emplace_back("model.embed_positions.weight",
                   hf.take(p + "wpe.weight", {c.context_length, d}));
  auto shape_of = [&](const std::string& qkv) -> Shape {  // [in, out] of a Conv1D
    if (qkv.ends_with("up_proj")) return {d, ff};
    if (qkv.ends_with("down_proj")) return {ff, d};
    return {d, d};
  };
  for (int64_t i = 0; i < c.layers; ++i) {
    std::string h = p + "h." + std::to_string(i) + ".",
                q = "model.layers." + std::to_string(i) + ".";
    for (const LayerTensor& t : kLayerTensors) {
      std::string from = h + t.hf, to = q + t.qkv;
      Shape shape = t.conv1d ? shape_of(t.qkv) : Shape{d};
      Tensor weight = hf.take(from + ".weight", shape);
      out.emplace_back(to + ".weight", t.conv1d ? transpose(weight) : weight);
      out.emplace_back(to + ".bias", hf.take(from + ".bias", {shape.back()}));
    }
    // [d, 3d] -> [3d, d]: rows 0..d-1 the query projection, then key, then value.
    Tensor packed = transpose(hf.take(h + "attn.c_attn.weight", {d, 3 * d}));
    Tensor bias = hf.take(h + "attn.c_attn.bias", {3 * d}).reshape({3, d});
    for (int64_t k = 0; k < 3; ++k) {
      std::string to = q + "self_attn." + kQkv[k];
      out.emplace_back(to + ".weight", packed.slice_rows(k * d, (k + 1) * d));
      out.emplace_back(to + ".bias", bias.slice_rows(k, k + 1).reshape({d}));
    }
    for (const char* buffer : {"attn.bias", "attn.masked_bias"}) hf.skip(h + buffer);
  }
  out.emplace_back("model.norm.weight", hf.take(p + "ln_f.weight", {d}));
  out.emplace_back("model.norm.bias", hf.take(p + "ln_f.bias", {d}));
  if (c.tie_embeddings)
    hf.skip("lm_head.weight");  // a tied copy, when saved
  else
    out.emplace_back("lm_head.weight", hf.take("lm_head.weight", {v, d}));
  return out;
}

void check_expressible(const std::string& qkv_dir, const nn::GptConfig& c) {
  require_option(qkv_dir, kArchitecture, "positions", c.positions, {"learned"});
  require_option(qkv_dir, kArchitecture, "norm", c.norm, {"layernorm"});
  require_option(qkv_dir, kArchitecture, "mlp", c.mlp, {"gelu_tanh", "gelu"});
  require_option(qkv_dir, kArchitecture, "bias", c.bias ? "true" : "false", {"true"});
  require_option(qkv_dir, kArchitecture, "moe-experts", std::to_string(c.moe.experts), {"0"});
  if (c.kv_head_count() != c.heads)  // multi-head attention only
    require_option(qkv_dir, kArchitecture, "kv-heads", std::to_string(c.kv_heads),
                   {"0", std::to_string(c.heads)});
}

ordered_json config_to_hf(const nn::GptConfig& c) {
  auto id = [](int32_t id) { return id >= 0 ? ordered_json(id) : ordered_json(); };
  double dropout = json_float(c.dropout);
  return {{"architectures", {kArchitecture}},
          {"model_type", "gpt2"},
          {"vocab_size", c.vocab_size},
          {"n_positions", c.context_length},
          {"n_embd", c.d_model},
          {"n_layer", c.layers},
          {"n_head", c.heads},
          {"n_inner", c.d_ff > 0 ? ordered_json(c.d_ff) : ordered_json()},
          {"activation_function", c.mlp == "gelu" ? "gelu" : "gelu_new"},
          {"layer_norm_epsilon", json_float(c.norm_eps)},
          {"resid_pdrop", dropout},
          {"embd_pdrop", dropout},
          {"attn_pdrop", dropout},
          {"scale_attn_weights", true},
          {"scale_attn_by_inverse_layer_idx", false},
          {"reorder_and_upcast_attn", false},
          {"tie_word_embeddings", c.tie_embeddings},
          {"bos_token_id", id(c.bos_id)},
          {"eos_token_id", eos_token_ids(c)},
          {"use_cache", true},
          {"torch_dtype", "float32"}};
}

NamedTensors weights_to_hf(const nn::Gpt& model) {
  const nn::GptConfig& c = model.config();
  std::map<std::string, Tensor> q;
  for (const auto& [name, param] : model.params()) q[name] = param.value();
  NamedTensors out;
  out.emplace_back("transformer.wte.weight", q.at("model.embed_tokens.weight"));
  out.emplace_back("transformer.wpe.weight", q.at("model.embed_positions.weight"));
  for (int64_t i = 0; i < c.layers; ++i) {
    std::string h = "transformer.h." + std::to_string(i) + ".",
                from = "model.layers." + std::to_string(i) + ".";
    std::vector<Tensor> weights, biases;
    for (const char* proj : kQkv) {
      weights.push_back(q.at(from + "self_attn." + proj + ".weight"));
      biases.push_back(q.at(from + "self_attn." + proj + ".bias"));
    }
    out.emplace_back(h + "ln_1.weight", q.at(from + "input_layernorm.weight"));
    out.emplace_back(h + "ln_1.bias", q.at(from + "input_layernorm.bias"));
    out.emplace_back(h + "attn.c_attn.weight", transpose(ops::concat(weights, 0)));  // [d, 3d]
    out.emplace_back(h + "attn.c_attn.bias", ops::concat(biases, 0));                // [3d]
    for (const LayerTensor& t : kLayerTensors) {
      if (std::string(t.hf) == "ln_1") continue;
      Tensor weight = q.at(from + t.qkv + ".weight");
      out.emplace_back(h + t.hf + ".weight", t.conv1d ? transpose(weight) : weight);
      out.emplace_back(h + t.hf + ".bias", q.at(from + t.qkv + ".bias"));
    }
  }
  out.emplace_back("transformer.ln_f.weight", q.at("model.norm.weight"));
  out.emplace_back("transformer.ln_f.bias", q.at("model.norm.bias"));
  if (!c.tie_embeddings) out.emplace_back("lm_head.weight", q.at("lm_head.weight"));
  return out;
}

}  // namespace

std::vector<std::string> gpt2_from_hf(const std::string& hf_dir, const std::string& qkv_dir) {
  check_output_dir(qkv_dir);
  JsonFile cfg = JsonFile::read(hf_dir + "/config.json");
  return lm_from_hf(hf_dir, cfg, config_from_hf(cfg), "byte-bpe", weights_from_hf, qkv_dir, {});
}

std::vector<std::string> gpt2_to_hf(const std::string& qkv_dir, const std::string& hf_dir,
                                    const std::string& which) {
  check_output_dir(hf_dir);
  model_dir::LanguageModel m = model_dir::load_language_model_dir(qkv_dir, which);
  check_expressible(qkv_dir, m.model->config());
  write_hf_lm_folder(qkv_dir, m, hf_dir, config_to_hf(m.model->config()), weights_to_hf(*m.model));
  return {};
}

}  // namespace qkv::convert
