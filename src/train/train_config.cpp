#include "train/train_config.h"

#include <algorithm>
#include <stdexcept>

#include "train/data_parallel.h"

namespace qkv::train {

TrainConfig::TrainConfig() {
  model.d_model = model.heads = model.d_ff = model.encoder_layers = model.decoder_layers = 0;
  model.activation.clear();
  model.max_positions = 512;
}

void TrainConfig::bind(Options& o) {
  o.add("model-dir", model_dir, "folder for the model, its vocabulary and checkpoints");
  o.add("train-sets", train_sets, "training corpora: file.tsv[.xz] or src-file,tgt-file");
  o.add("valid-sets", valid_sets, "validation corpora (same forms) for loss and BLEU");
  o.add("preset", preset, "model shape: tiny, small or base");
  model.bind_shape(o);
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
  c.override_shape(model);
  c.vocab_size = vocab;
  c.dropout = dropout;
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
  need(max_length > 0 && max_length + 1 <= model.max_positions,
       "max-length must be positive and below max-positions");
  need(spm_type == "unigram" || spm_type == "bpe", "spm-type must be unigram or bpe");
  need(update_tokens == 0 || accumulate == 1,
       "update-tokens and accumulate both set: give one (batches per update) or the other "
       "(target tokens per update)");
  need(update_tokens == 0 || Ranks::size() == 1,
       "update-tokens counts one process's tokens: with " + std::to_string(Ranks::size()) +
           " ranks give accumulate (batches per update on each rank) instead");
  nn::Seq2SeqConfig shape = nn::Seq2SeqConfig::preset(preset);
  shape.override_shape(model);
  shape.moe.check("model", std::max(shape.encoder_layers, shape.decoder_layers));
  validate_loop();
}

}  // namespace qkv::train
