#include "convert/torch_transformer.h"

#include "convert/hf_weights.h"
#include "data/tokenizer.h"
#include "model_dir/seq2seq_dir.h"

namespace qkv::convert {

namespace {

// Adds qkv's names for one torch attention block (in_proj split into q, k, v).
void take_attention(CheckpointTensors& w, const std::string& from, const std::string& to, int64_t d,
                    NamedTensors& out) {
  auto in_w = w.take_row_blocks(from + ".in_proj_weight", {3 * d, d}, 3);
  auto in_b = w.take_row_blocks(from + ".in_proj_bias", {3 * d}, 3);
  const char* parts[] = {"q_proj", "k_proj", "v_proj"};
  for (size_t k = 0; k < 3; ++k) {
    out.emplace_back(to + "." + parts[k] + ".weight", in_w[k]);
    out.emplace_back(to + "." + parts[k] + ".bias", in_b[k]);
  }
  out.emplace_back(to + ".out_proj.weight", w.take(from + ".out_proj.weight", {d, d}));
  out.emplace_back(to + ".out_proj.bias", w.take(from + ".out_proj.bias", {d}));
}

void take_pair(CheckpointTensors& w, const std::string& from, const std::string& to,
               const Shape& weight, NamedTensors& out) {
  out.emplace_back(to + ".weight", w.take(from + ".weight", weight));
  out.emplace_back(to + ".bias", w.take(from + ".bias", {weight[0]}));
}

}  // namespace

std::vector<std::string> seq2seq_from_torch(const std::string& weights,
                                            const std::string& config_yaml,
                                            const std::string& spm_model,
                                            const std::string& qkv_dir,
                                            const std::string& state_dict) {
  check_output_dir(qkv_dir);
  std::vector<std::string> notes;
  nn::Seq2SeqConfig c = model_dir::read_seq2seq_config(config_yaml);
  data::Tokenizer tok = data::Tokenizer::load(spm_model);
  if (tok.vocab_size() != c.vocab_size)
    throw std::runtime_error(spm_model + " has " + std::to_string(tok.vocab_size()) +
                             " pieces but " + config_yaml + " says vocab-size " +
                             std::to_string(c.vocab_size));
  CheckpointTensors w = CheckpointTensors::read_file(weights, state_dict);
  if (state_dict.empty() && !w.entry().empty())
    notes.push_back("read the weights under '" + w.entry() + "' of " + weights);
  std::string p =
      w.has("transformer.encoder.norm.weight") || w.has("transformer.decoder.layers.0.norm1.weight")
          ? "transformer."
          : "";
  bool norms = w.has(p + "encoder.norm.weight");
  if (norms != w.has(p + "decoder.norm.weight"))
    throw std::runtime_error(weights + ": has only one of encoder.norm and decoder.norm");
  if (c.pre_norm && !norms)
    throw std::runtime_error(weights + ": a pre-norm model needs encoder.norm and decoder.norm");
  if (!c.pre_norm && norms != c.final_norm) {
    c.final_norm = norms;
    notes.push_back(std::string("final-norm set to ") + (norms ? "true" : "false") +
                    " (the checkpoint's stacks " + (norms ? "end" : "do not end") +
                    " with a LayerNorm)");
  }
  bool has_generator = w.has("generator.weight");
  if (has_generator == c.tie_embeddings) {
    c.tie_embeddings = !has_generator;
    notes.push_back(std::string("tie-embeddings set to ") + (c.tie_embeddings ? "true" : "false") +
                    " (the checkpoint " + (has_generator ? "has" : "has no") +
                    " generator.weight)");
  }
  c.check(config_yaml);

  const int64_t d = c.d_model, v = c.vocab_size, ff = c.d_ff;
  nn::Seq2Seq model(c);
  NamedTensors named;
  named.emplace_back("model.shared.weight", w.take("embedding.weight", {v, d}));
  for (int64_t i = 0; i < c.encoder_layers; ++i) {
    std::string from = p + "encoder.layers." + std::to_string(i),
                to = "model.encoder.layers." + std::to_string(i);
    take_attention(w, from + ".self_attn", to + ".self_attn", d, named);
    take_pair(w, from + ".norm1", to + ".self_attn_layer_norm", {d}, named);
    take_pair(w, from + ".linear1", to + ".fc1", {ff, d}, named);
    take_pair(w, from + ".linear2", to + ".fc2", {d, ff}, named);
    take_pair(w, from + ".norm2", to + ".final_layer_norm", {d}, named);
  }
  for (int64_t i = 0; i < c.decoder_layers; ++i) {
    std::string from = p + "decoder.layers." + std::to_string(i),
                to = "model.decoder.layers." + std::to_string(i);
    take_attention(w, from + ".self_attn", to + ".self_attn", d, named);
    take_pair(w, from + ".norm1", to + ".self_attn_layer_norm", {d}, named);
    take_attention(w, from + ".multihead_attn", to + ".encoder_attn", d, named);
    take_pair(w, from + ".norm2", to + ".encoder_attn_layer_norm", {d}, named);
    take_pair(w, from + ".linear1", to + ".fc1", {ff, d}, named);
    take_pair(w, from + ".linear2", to + ".fc2", {d, ff}, named);
    take_pair(w, from + ".norm3", to + ".final_layer_norm", {d}, named);
  }
  if (norms) {
    take_pair(w, p + "encoder.norm", "model.encoder.layer_norm", {d}, named);
    take_pair(w, p + "decoder.norm", "model.decoder.layer_norm", {d}, named);
  }
  if (has_generator) named.emplace_back("lm_head.weight", w.take("generator.weight", {v, d}));
  named.emplace_back("final_logits_bias",
                     w.has("generator.bias") ? w.take("generator.bias", {v}) : Tensor::zeros({v}));
  w.finish();
  nn::load_params(model.params(), named, weights);

  model_dir::save_translation_dir(qkv_dir, c, tok, model.params());
  return notes;
}

}  // namespace qkv::convert
