// A SentencePiece model as a language model's tokenizer (Llama's tokenizer.model, or one
// trained here: BPE with byte fallback, identity normalisation, whitespace kept, ids unk 0,
// bos 1, eos 2 as Llama's). Stored as spm.model.
#pragma once
#include "data/lm_tokenizer.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace qkv::data {

class SentencePieceLm : public LmTokenizer {
 public:
  // Trains on the lines of `documents` (a seeded sample of options.max_sentences of them).
  static std::unique_ptr<SentencePieceLm> train(const std::vector<std::string>& documents,
                                                const LmTokenizerOptions& options);
  static std::unique_ptr<SentencePieceLm> load(const std::string& model_dir,
                                               const Settings& settings);
  ~SentencePieceLm() override;

  std::string type() const override { return "sentencepiece"; }
  int32_t vocab_size() const override;
  // With the model's own normaliser; <s> and </s> in the text are plain text.
  std::vector<int32_t> encode(std::string_view text) const override;
  // SentencePiece's decoding, except that byte pieces <0xAB> give their raw byte.
  std::string decode_bytes(const std::vector<int32_t>& ids) const override;
  std::string piece(int32_t id) const override;
  void save(const std::string& model_dir) const override;

 private:
  SentencePieceLm(std::string serialized, int32_t bos_id, int32_t eos_id, bool add_bos,
                  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor);

  std::string serialized_;  // spm.model's bytes
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
};

}  // namespace qkv::data
