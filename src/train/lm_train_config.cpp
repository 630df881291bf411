#include "train/lm_train_config.h"

#include <stdexcept>

namespace qkv::train {

LmTrainConfig::LmTrainConfig() {
  // nanoGPT's recipe for small models: AdamW (beta2 0.99, decay 0.1), cosine with warm-up.
  optimizer = "adamw", lr_schedule = "cosine";
  learning_rate = 1e-3, weight_decay = 0.1, clip_norm = 1.0;
  beta1 = 0.9, beta2 = 0.99, epsilon = 1e-8;
  warmup_steps = 100;
  label_smoothing = 0.f, dropout = -1.f;  // -1: the preset's
  disp_freq = 50, valid_freq = 250, save_freq = 250;
  early_stopping = 0;
  // -1: the preset's (0 is a value, and an error where it is impossible).
  model.context_length = model.d_model = model.layers = model.heads = -1;
  model.kv_heads = model.d_ff = -1;
  model.rope_theta = -1, model.norm_eps = -1;
  model.positions.clear(), model.norm.clear(), model.mlp.clear();
}

void LmTrainConfig::bind(Options& o) {
  o.add("model-dir", model_dir, "folder for the model, its tokenizer and checkpoints");
  o.add("train-sets", train_sets, "training text: plain files (.xz too) or TSV with text-column");
  o.add("valid-sets", valid_sets, "validation text (same forms): loss, perplexity, bits/char");
  o.add("document-separator", document_separator,
        "documents are split on this string (empty: one document per line)");
  o.add("text-column", text_column, "take this column of tab-separated lines (1-based; 0: all)");
  o.add("tokenizer", tokenizer, "chars or sentencepiece (BPE with byte fallback)");
  o.add("vocab-size", vocab_size, "sentencepiece vocabulary size");
  o.add("tokenizer-max-documents", tokenizer_max_documents,
        "documents sampled to train the tokenizer");
  o.add("preset", preset, "model shape: gpt-nano, gpt-mini, gpt2 or llama-tiny");
  model.bind_shape(o);
  o.add("bias", bias, "biases in the attention and MLP projections: preset, true or false");
  o.add("tie-embeddings", tie_embeddings,
        "output projection shares the embedding matrix: preset, true or false");
  o.add("batch-size", batch_size, "windows of context-length tokens per batch");
  o.add("valid-max-tokens", valid_max_tokens, "validation tokens scored (0: all)");
  o.add("sample-prompt", sample_prompt, "prompt of the sample logged at each validation");
  o.add("sample-tokens", sample_tokens, "tokens of that sample (0: none)");
  bind_loop(o);
}

void LmTrainConfig::validate() const {
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument(what);
  };
  need(!model_dir.empty(), "--model-dir is required");
  need(!train_sets.empty(), "--train-sets is required (text files)");
  need(tokenizer == "chars" || tokenizer == "sentencepiece",
       "tokenizer must be chars or sentencepiece, not '" + tokenizer + "'");
  for (auto [key, value] : {std::pair{"bias", &bias}, {"tie-embeddings", &tie_embeddings}})
    need(*value == "preset" || *value == "true" || *value == "false",
         std::string(key) + " must be preset, true or false, not '" + *value + "'");
  need(vocab_size > 3, "vocab-size must be above 3");
  need(text_column >= 0, "text-column must not be negative");
  need(batch_size > 0, "batch-size must be positive, not " + std::to_string(batch_size));
  need(model.context_length != 0, "context-length must be positive, not 0");
  need(valid_max_tokens >= 0 && sample_tokens >= 0,
       "valid-max-tokens and sample-tokens must not be negative");
  need(dropout < 1, "dropout must be below 1");
  LoopConfig loop = *this;
  if (loop.dropout < 0) loop.dropout = 0;  // the preset's, checked with the model
  loop.validate_loop();
}

nn::GptConfig LmTrainConfig::model_config(int64_t vocab, int32_t bos_id, int32_t eos_id) const {
  nn::GptConfig c = nn::GptConfig::preset(preset);
  const nn::GptConfig& m = model;
  if (m.context_length != -1) c.context_length = m.context_length;
  if (m.d_model != -1) c.d_model = m.d_model;
  if (m.layers != -1) c.layers = m.layers;
  if (m.heads != -1) c.heads = m.heads;
  if (m.kv_heads != -1) c.kv_heads = m.kv_heads;
  if (m.d_ff != -1) c.d_ff = m.d_ff;
  if (!m.positions.empty()) c.positions = m.positions;
  if (m.rope_theta != -1) c.rope_theta = m.rope_theta;
  if (!m.norm.empty()) c.norm = m.norm;
  if (m.norm_eps != -1) c.norm_eps = m.norm_eps;
  if (!m.mlp.empty()) c.mlp = m.mlp;
  c.moe = m.moe;  // no preset has experts
  if (bias != "preset") c.bias = bias == "true";
  if (tie_embeddings != "preset") c.tie_embeddings = tie_embeddings == "true";
  if (dropout >= 0) c.dropout = float(dropout);
  c.vocab_size = vocab, c.bos_id = bos_id, c.eos_id = eos_id;
  c.check("model");
  return c;
}

}  // namespace qkv::train
