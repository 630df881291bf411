#include "train/train_config.h"

#include <stdexcept>

namespace qkv::train {

void TrainConfig::bind(Options& o) {
  o.add("model-dir", model_dir, "folder for the model, its vocabulary and checkpoints");
  o.add("train-sets", train_sets, "training corpora: file.tsv[.xz] or src-file,tgt-file");
  o.add("valid-sets", valid_sets, "validation corpora (same forms) for loss and BLEU");
  o.add("preset", preset, "model shape: tiny, small or base");
  o.add("d-model", d_model, "model width (0: the preset's)");
  o.add("heads", heads, "attention heads (0: the preset's)");
  o.add("d-ff", d_ff, "feed-forward width (0: the preset's)");
  o.add("encoder-layers", encoder_layers, "encoder layers (0: the preset's)");
  o.add("decoder-layers", decoder_layers, "decoder layers (0: the preset's)");
  o.add("activation", activation, "feed-forward activation: relu, gelu or gelu_tanh");
  o.add("pre-norm", pre_norm, "LayerNorm before each sub-layer instead of after");
  o.add("tie-embeddings", tie_embeddings, "output projection shares the embedding matrix");
  o.add("max-positions", max_positions, "longest sequence in subwords the model accepts");
  o.add("vocab-size", vocab_size, "SentencePiece vocabulary size when one is trained");
  o.add("spm-type", spm_type, "SentencePiece model type: unigram or bpe");
  o.add("spm-model", spm_model, "an existing SentencePiece model to use instead of training one");
  o.add("spm-max-sentences", spm_max_sentences, "sentences sampled to train SentencePiece");
  o.add("batch-tokens", batch_tokens, "padded tokens per batch (source or target, the larger)");
  o.add("update-tokens", update_tokens,
        "target tokens per update: batches are accumulated until reached (0: one batch)");
  o.add("max-length", max_length, "training sentences longer than this (subwords) are cut");
  bind_loop(o);
  o.add("valid-max-sentences", valid_max_sentences,
        "translate at most this many dev sentences for BLEU (0: all)");
}

nn::Seq2SeqConfig TrainConfig::model_config(int64_t vocab) const {
  nn::Seq2SeqConfig c = nn::Seq2SeqConfig::preset(preset);
  c.vocab_size = vocab;
  if (d_model) c.d_model = d_model;
  if (heads) c.heads = heads;
  if (d_ff) c.d_ff = d_ff;
  if (encoder_layers) c.encoder_layers = encoder_layers;
  if (decoder_layers) c.decoder_layers = decoder_layers;
  if (!activation.empty()) c.activation = activation;
  c.pre_norm = pre_norm;
  c.tie_embeddings = tie_embeddings;
  c.dropout = dropout;
  c.max_positions = max_positions;
  c.source_eos = true;  // as Marian and fairseq: exported models work with MarianTokenizer
  return c;
}

void TrainConfig::validate() const {
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument(what);
  };
  need(!model_dir.empty(), "--model-dir is required");
  need(!train_sets.empty(), "--train-sets is required (a .tsv[.xz] file or src,tgt files)");
  need(batch_tokens > 0, "batch-tokens must be positive");
  need(max_length > 0 && max_length + 1 <= max_positions,
       "max-length must be positive and below max-positions");
  need(spm_type == "unigram" || spm_type == "bpe", "spm-type must be unigram or bpe");
  validate_loop();
}

}  // namespace qkv::train
