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
  o.add("max-updates", max_updates, "stop after this many updates (0: no limit)");
  o.add("max-epochs", max_epochs, "stop after this many epochs (0: no limit)");
  o.add("max-time", max_time, "stop this run after this many minutes (0: no limit)");
  o.add("early-stopping", early_stopping,
        "stop after this many validations without a better dev BLEU (0: never)");
  o.add("optimizer", optimizer, "adam or adamw");
  o.add("lr-schedule", lr_schedule, "inverse-sqrt, cosine or constant (all with warm-up)");
  o.add("learning-rate", learning_rate, "peak learning rate, reached after warmup-steps");
  o.add("warmup-steps", warmup_steps, "updates of linear warm-up");
  o.add("weight-decay", weight_decay, "decoupled weight decay (adamw)");
  o.add("clip-norm", clip_norm, "clip the global gradient norm to this (0: off)");
  o.add("beta1", beta1, "Adam beta1");
  o.add("beta2", beta2, "Adam beta2");
  o.add("epsilon", epsilon, "Adam epsilon");
  o.add("label-smoothing", label_smoothing, "label smoothing of the cross-entropy");
  o.add("dropout", dropout, "dropout on embeddings, sub-layer outputs and the FFN");
  o.add("disp-freq", disp_freq, "log a line every this many updates");
  o.add("valid-freq", valid_freq, "validate every this many updates");
  o.add("save-freq", save_freq, "write a checkpoint every this many updates");
  o.add("valid-max-sentences", valid_max_sentences,
        "translate at most this many dev sentences for BLEU (0: all)");
  o.add("seed", seed, "seed of initialisation, batching and dropout");
  o.add("threads", threads, "CPU threads for OpenMP and BLAS (0: all cores)");
  o.add("device", device, "cpu or cuda");
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
  need(learning_rate > 0, "learning-rate must be positive");
  need(label_smoothing >= 0 && label_smoothing < 1, "label-smoothing must be in [0, 1)");
  need(dropout >= 0 && dropout < 1, "dropout must be in [0, 1)");
  need(optimizer == "adam" || optimizer == "adamw", "optimizer must be adam or adamw");
  need(spm_type == "unigram" || spm_type == "bpe", "spm-type must be unigram or bpe");
  need(device == "cpu" || device == "cuda", "device must be cpu or cuda");
  need(disp_freq > 0 && valid_freq > 0 && save_freq > 0,
       "disp-freq, valid-freq and save-freq must be positive");
}

}  // namespace qkv::train
