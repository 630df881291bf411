// Small model directories with random weights, one per family, for the tests that run models
// the way users do (the command line, the server, the Python module). Their outputs are
// meaningless but deterministic: the tests compare one way of running a model with another.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "data/corpus.h"
#include "data/lm_tokenizer.h"
#include "model_dir/gpt_dir.h"
#include "model_dir/seq2seq_dir.h"
#include "model_dir/vit_dir.h"

namespace qkv::test {

// The Bible corpus's dev split (data/), read once.
inline const data::ParallelCorpus& bible_dev() {
  static const std::string path = QKV_SOURCE_DIR "/data/bible.es-en.dev.tsv.xz";
  static data::ParallelCorpus c = data::read_corpus(path);
  return c;
}

// A Spanish->English model (BPE of 200 subwords trained on the dev split) at `out`.
inline void write_random_translation_dir(const std::string& out, uint64_t seed) {
  std::vector<std::string_view> text;
  for (size_t i = 0; i < 300; ++i)
    text.push_back(bible_dev().src[i]), text.push_back(bible_dev().tgt[i]);
  data::TokenizerOptions t;
  t.vocab_size = 200, t.model_type = "bpe";
  data::Tokenizer tok = data::Tokenizer::train(text, t);
  nn::Seq2SeqConfig c;
  c.vocab_size = tok.vocab_size(), c.d_model = 32, c.heads = 4, c.d_ff = 64;
  c.encoder_layers = 2, c.decoder_layers = 2, c.max_positions = 64;
  nn::Seq2Seq model(c);
  Rng rng(seed);
  model.init(rng);
  model_dir::save_translation_dir(out, c, tok, model.params());
}

// A Llama-style language model with a chars tokenizer of English at `out`.
inline void write_random_gpt_dir(const std::string& out, uint64_t seed) {
  std::vector<std::string> text(bible_dev().tgt.begin(), bible_dev().tgt.begin() + 100);
  auto tok = data::LmTokenizer::train("chars", text, {});
  nn::GptConfig c = nn::GptConfig::preset("llama-tiny");
  c.vocab_size = tok->vocab_size(), c.bos_id = tok->bos_id(), c.eos_id = tok->eos_id();
  c.context_length = 32, c.d_model = 32, c.layers = 2, c.heads = 4, c.kv_heads = 2;
  nn::Gpt model(c);
  Rng rng(seed);
  model.init(rng);
  model_dir::save_gpt_dir(out, c, model.params());
  tok->save(out);
}

// A ViT of 3 classes (bird, cat, dog) on 8x8 RGB images at `out`.
inline void write_random_vit_dir(const std::string& out, uint64_t seed) {
  nn::ViTConfig c;
  c.channels = 3, c.image_size = 8, c.patch_size = 4;
  c.d_model = 16, c.heads = 2, c.d_ff = 32, c.layers = 2;
  c.classes = {"bird", "cat", "dog"};
  c.mean = {0.4f, 0.5f, 0.6f}, c.stddev = {0.2f, 0.25f, 0.3f};
  nn::ViT model(c);
  Rng rng(seed);
  model.init(rng);
  model_dir::save_vit_dir(out, c, model.params());
}

}  // namespace qkv::test
