#include "convert/hf_marian.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>

#include "convert/hf_weights.h"
#include "convert/json_file.h"
#include "io/atomic_file.h"
#include "model_dir/seq2seq_dir.h"

namespace qkv::convert {

namespace fs = std::filesystem;

namespace {

// Which axis of a Seq2Seq parameter runs along the residual stream (-1: none).
int residual_axis(const std::string& name) {
  if (name == "model.shared.weight" || name == "lm_head.weight") return 1;
  for (const char* in : {"q_proj.weight", "k_proj.weight", "v_proj.weight", "fc1.weight"})
    if (name.ends_with(in)) return 1;
  for (const char* out : {"out_proj.weight", "fc2.weight", "out_proj.bias", "fc2.bias",
                          "layer_norm.weight", "layer_norm.bias"})
    if (name.ends_with(out)) return 0;
  return -1;
}

// t (1-D, or 2-D [rows, cols]) with `perm` gathered along `axis`: out[.., j] = t[.., perm[j]].
Tensor gather_axis(const Tensor& t, int axis, const std::vector<int64_t>& perm) {
  Tensor out = Tensor::empty(t.shape());
  const float* src = t.data<float>();
  float* dst = out.data<float>();
  int64_t rows = t.rank() == 1 ? 1 : t.size(0), cols = t.rank() == 1 ? t.size(0) : t.size(1);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      dst[r * cols + c] =
          axis == 1 ? src[r * cols + perm[size_t(c)]] : src[perm[size_t(r)] * cols + c];
  return out;
}

// Re-expresses every parameter in the residual basis given by `perm` (new[j] = old[perm[j]]).
void permute_residual(NamedTensors& tensors, const std::vector<int64_t>& perm) {
  for (auto& [name, t] : tensors) {
    int axis = residual_axis(name);
    if (axis >= 0) t = gather_axis(t, t.rank() == 1 ? 1 : axis, perm);
  }
}

std::vector<int64_t> inverse(const std::vector<int64_t>& perm) {
  std::vector<int64_t> inv(perm.size());
  for (size_t j = 0; j < perm.size(); ++j) inv[size_t(perm[j])] = int64_t(j);
  return inv;
}

nn::Seq2SeqConfig config_from_hf(const JsonFile& cfg) {
  if (cfg.has("architectures")) {
    auto archs = cfg.require<std::vector<std::string>>("architectures");
    if (std::find(archs.begin(), archs.end(), "MarianMTModel") == archs.end())
      throw std::runtime_error(cfg.path() + ": architecture " + cfg.json()["architectures"].dump() +
                               " is not MarianMTModel");
  }
  auto same = [&](const char* enc, const char* dec) {
    int64_t e = cfg.require<int64_t>(enc), d = cfg.require<int64_t>(dec);
    if (e != d)
      throw std::runtime_error(cfg.path() + ": " + enc + " " + std::to_string(e) + " and " + dec +
                               " " + std::to_string(d) + " differ, which qkv does not support");
    return e;
  };
  for (const char* key : {"normalize_before", "normalize_embedding", "add_final_layer_norm"})
    if (cfg.get<bool>(key, false))
      throw std::runtime_error(cfg.path() + ": \"" + key + "\": true is not supported");
  if (!cfg.get<bool>("static_position_embeddings", true))
    throw std::runtime_error(cfg.path() +
                             ": learned position embeddings "
                             "(static_position_embeddings false) are not supported");
  if (!cfg.get<bool>("share_encoder_decoder_embeddings", true))
    throw std::runtime_error(cfg.path() +
                             ": separate source and target vocabularies "
                             "(share_encoder_decoder_embeddings false) are not supported");
  nn::Seq2SeqConfig c;
  c.vocab_size = cfg.require<int64_t>("vocab_size");
  if (cfg.get<int64_t>("decoder_vocab_size", c.vocab_size) != c.vocab_size)
    throw std::runtime_error(cfg.path() + ": decoder_vocab_size differs from vocab_size");
  c.d_model = cfg.require<int64_t>("d_model");
  c.encoder_layers = cfg.require<int64_t>("encoder_layers");
  c.decoder_layers = cfg.require<int64_t>("decoder_layers");
  c.heads = same("encoder_attention_heads", "decoder_attention_heads");
  c.d_ff = same("encoder_ffn_dim", "decoder_ffn_dim");
  c.activation = activation_from_hf(cfg, "activation_function");
  c.scale_embeddings = cfg.get<bool>("scale_embedding", false);
  c.max_positions = cfg.get<int64_t>("max_position_embeddings", 1024);
  c.pad_id = cfg.get<int32_t>("pad_token_id", 58100);
  c.eos_id = cfg.get<int32_t>("eos_token_id", 0);
  c.bos_id = cfg.get<int32_t>("decoder_start_token_id", c.pad_id);
  c.tie_embeddings = cfg.get<bool>("tie_word_embeddings", true);
  c.dropout = cfg.get<float>("dropout", 0.1f);
  c.pre_norm = false, c.final_norm = false, c.source_eos = true;
  c.position_layout = cfg.get<std::string>("qkv_position_layout", "halves");
  return c;
}

// A joint tokenizer when the mapped one is just a qkv spm.model written out by marian_to_hf.
data::Tokenizer tokenizer_from_hf(const std::string& dir) {
  std::string src = dir + "/source.spm", tgt = dir + "/target.spm", vocab = dir + "/vocab.json";
  if (fs::exists(dir + "/target_vocab.json"))
    throw std::runtime_error(dir +
                             ": separate source and target vocabularies (target_vocab.json) "
                             "are not supported");
  data::Tokenizer mapped = data::Tokenizer::load_mapped(src, tgt, vocab);
  if (read_file(src) != read_file(tgt)) return mapped;
  try {
    data::Tokenizer joint = data::Tokenizer::load(src);
    if (joint.vocab_size() != mapped.vocab_size()) return mapped;
    for (int32_t i = 0; i < joint.vocab_size(); ++i)
      if (joint.piece(i) != mapped.piece(i)) return mapped;
    return joint;
  } catch (const std::runtime_error&) {
    return mapped;  // special ids other than qkv's
  }
}

}  // namespace

std::vector<int64_t> halves_from_interleaved(int64_t d) {
  std::vector<int64_t> perm(static_cast<size_t>(d));
  int64_t half = (d + 1) / 2;
  for (int64_t j = 0; j < d; ++j) perm[size_t(j)] = j < half ? 2 * j : 2 * (j - half) + 1;
  return perm;
}

std::vector<std::string> marian_from_hf(const std::string& hf_dir, const std::string& qkv_dir) {
  check_output_dir(qkv_dir);
  std::vector<std::string> notes;
  JsonFile cfg = JsonFile::read(hf_dir + "/config.json");
  nn::Seq2SeqConfig c = config_from_hf(cfg);
  data::Tokenizer tok = tokenizer_from_hf(hf_dir);
  if (tok.vocab_size() != c.vocab_size)
    throw std::runtime_error(hf_dir + ": vocab.json has " + std::to_string(tok.vocab_size()) +
                             " pieces, config.json vocab_size is " + std::to_string(c.vocab_size));
  if (tok.specials().pad != c.pad_id || tok.specials().eos != c.eos_id)
    throw std::runtime_error(hf_dir + ": vocab.json's <pad>/</s> ids (" +
                             std::to_string(tok.specials().pad) + ", " +
                             std::to_string(tok.specials().eos) +
                             ") differ from config.json's pad_token_id/eos_token_id");
  c.unk_id = tok.specials().unk;
  c.check(hf_dir + "/config.json");

  CheckpointTensors w = CheckpointTensors::read_hf_folder(hf_dir);
  nn::Seq2Seq model(c);
  NamedTensors named;
  const int64_t d = c.d_model, v = c.vocab_size;
  const char* shared_names[] = {"model.shared.weight", "model.encoder.embed_tokens.weight",
                                "model.decoder.embed_tokens.weight"};
  std::string shared;
  for (const char* name : shared_names)
    if (shared.empty() && w.has(name)) shared = name;
  if (shared.empty() && c.tie_embeddings && w.has("lm_head.weight")) shared = "lm_head.weight";
  if (shared.empty())
    throw std::runtime_error(w.origin() + ": missing tensor 'model.shared.weight'");
  for (const char* name : shared_names) w.skip(name);  // tied copies of the shared embeddings
  if (c.tie_embeddings) w.skip("lm_head.weight");
  Tensor positions = nn::sinusoidal_positions(c.max_positions, d, nn::PositionLayout::halves);
  for (const char* name :
       {"model.encoder.embed_positions.weight", "model.decoder.embed_positions.weight"}) {
    if (!w.has(name)) continue;
    Tensor saved = w.take(name, {c.max_positions, d});
    for (int64_t i = 0; i < saved.numel(); ++i)
      if (std::fabs(saved.data<float>()[i] - positions.data<float>()[i]) > 1e-3f)
        throw std::runtime_error(w.origin() + ": " + name +
                                 " is not Marian's sinusoid table (learned positions are not "
                                 "supported)");
  }
  for (const auto& [name, param] : model.params()) {
    if (name == "model.shared.weight") {
      named.emplace_back(name, w.take(shared, {v, d}));
    } else if (name == "final_logits_bias") {
      Tensor bias = w.has(name) ? w.take(name, {1, v}).reshape({v}) : Tensor::zeros({v});
      if (!w.has(name)) notes.push_back("no final_logits_bias: using zeros");
      named.emplace_back(name, bias);
    } else {
      named.emplace_back(name, w.take(name, param.value().shape()));
    }
  }
  w.finish();
  if (c.position_layout == "interleaved")
    permute_residual(named, inverse(halves_from_interleaved(d)));
  nn::load_params(model.params(), named, w.origin());

  model_dir::save_translation_dir(qkv_dir, c, tok, model.params());
  return notes;
}

std::vector<std::string> marian_to_hf(const std::string& qkv_dir, const std::string& hf_dir,
                                      const std::string& which) {
  check_output_dir(hf_dir);
  std::vector<std::string> notes;
  model_dir::TranslationModel m = model_dir::load_translation_dir(qkv_dir, which);
  const nn::Seq2SeqConfig& c = m.model->config();
  if (c.pre_norm || c.final_norm)
    throw std::runtime_error(qkv_dir + ": MarianMTModel is post-norm without final LayerNorms; " +
                             "this model has pre-norm or final-norm");
  if (c.moe.enabled())
    throw std::runtime_error(qkv_dir + ": MarianMTModel has no Mixture-of-Experts layers; this " +
                             "model has moe-experts " + std::to_string(c.moe.experts));
  if (!c.source_eos)
    notes.push_back(
        "the model was trained without <eos> after the source, which MarianTokenizer "
        "appends: translations through Hugging Face's tokenizer may differ");
  bool interleaved = c.position_layout == "interleaved";
  NamedTensors named;
  for (const auto& [name, param] : m.model->params()) {
    Tensor t = param.value();
    if (name == "final_logits_bias") t = t.reshape({1, c.vocab_size});
    named.emplace_back(name, t);
  }
  if (interleaved) permute_residual(named, halves_from_interleaved(c.d_model));

  nlohmann::ordered_json bad_words = {{c.pad_id}};
  if (c.bos_id != c.pad_id) bad_words.push_back({c.bos_id});  // qkv never emits <bos> either
  nlohmann::ordered_json cfg = {
      {"architectures", {"MarianMTModel"}},
      {"model_type", "marian"},
      {"vocab_size", c.vocab_size},
      {"decoder_vocab_size", c.vocab_size},
      {"d_model", c.d_model},
      {"encoder_layers", c.encoder_layers},
      {"decoder_layers", c.decoder_layers},
      {"encoder_attention_heads", c.heads},
      {"decoder_attention_heads", c.heads},
      {"encoder_ffn_dim", c.d_ff},
      {"decoder_ffn_dim", c.d_ff},
      {"activation_function", activation_to_hf(c.activation)},
      {"scale_embedding", c.scale_embeddings},
      {"max_position_embeddings", c.max_positions},
      {"pad_token_id", c.pad_id},
      {"eos_token_id", c.eos_id},
      {"decoder_start_token_id", c.bos_id},
      {"forced_eos_token_id", c.eos_id},
      {"share_encoder_decoder_embeddings", true},
      {"tie_word_embeddings", c.tie_embeddings},
      {"dropout", c.dropout},
      {"attention_dropout", 0.0},
      {"activation_dropout", 0.0},
      {"is_encoder_decoder", true},
      {"torch_dtype", "float32"},
  };
  if (interleaved) cfg["qkv_position_layout"] = "interleaved";
  nlohmann::ordered_json generation = {{"bad_words_ids", bad_words},
                                       {"decoder_start_token_id", c.bos_id},
                                       {"eos_token_id", c.eos_id},
                                       {"forced_eos_token_id", c.eos_id},
                                       {"pad_token_id", c.pad_id},
                                       {"max_length", c.max_positions},
                                       {"num_beams", 1}};
  const data::Tokenizer& tok = *m.tokenizer;
  nlohmann::ordered_json specials = {{"eos_token", tok.piece(c.eos_id)},
                                     {"unk_token", tok.piece(c.unk_id)},
                                     {"pad_token", tok.piece(c.pad_id)}};
  nlohmann::ordered_json tok_cfg = {{"tokenizer_class", "MarianTokenizer"},
                                    {"source_lang", "src"},
                                    {"target_lang", "tgt"},
                                    {"separate_vocabs", false},
                                    {"model_max_length", c.max_positions}};
  tok_cfg.update(specials);

  fs::create_directories(hf_dir);
  write_json(hf_dir + "/config.json", cfg);
  write_json(hf_dir + "/generation_config.json", generation);
  write_json(hf_dir + "/tokenizer_config.json", tok_cfg);
  write_json(hf_dir + "/special_tokens_map.json", specials);
  if (tok.joint()) {
    nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
    for (int32_t i = 0; i < tok.vocab_size(); ++i) vocab[tok.piece(i)] = i;
    write_file_atomic(hf_dir + "/source.spm", tok.serialized());
    write_file_atomic(hf_dir + "/target.spm", tok.serialized());
    write_json(hf_dir + "/vocab.json", vocab);
  } else {
    tok.save(hf_dir);
  }
  save_safetensors(hf_dir + "/model.safetensors", named, {{"format", "pt"}});
  return notes;
}

}  // namespace qkv::convert
