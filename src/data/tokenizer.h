// Subword tokenizer: a SentencePiece model shared by source and target ("joint"), with fixed
// ids for the special symbols so that models, batches and decoders agree on them.
// Text goes through SentencePiece's default normaliser (nmt_nfkc: NFKC, whitespace runs folded),
// so decode(encode(s)) == s for NFKC text whose characters the model has all seen.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace qkv::data {

struct ParallelCorpus;

struct TokenizerOptions {
  int vocab_size = 8000;
  std::string model_type = "unigram";  // or "bpe"
  double character_coverage = 1.0;     // share of characters kept; the rest map to <unk>
  uint64_t seed = 1;                   // picks the sample when max_sentences applies
  // Trains on a random sample of this many sentences when there are more (0: all). The
  // sample is drawn here with qkv::Rng, so it depends on the seed only.
  int64_t max_sentences = 0;
  // SentencePiece's training threads. A unigram model depends on this count (its EM sums are
  // split by thread), a bpe model does not: keep it fixed to reproduce a model.
  int threads = 2;
  bool verbose = false;  // SentencePiece's own progress log on standard error
};

class Tokenizer {
 public:
  static constexpr int32_t pad_id = 0, unk_id = 1, bos_id = 2, eos_id = 3;

  // Trains on `sentences`. The same sentences and options (seed and threads included) give the
  // same model, byte for byte.
  // Throws std::runtime_error with SentencePiece's message on failure (e.g. a vocabulary
  // larger than the text supports).
  static Tokenizer train(const std::vector<std::string_view>& sentences,
                         const TokenizerOptions& options);
  // A joint model over both sides of `corpus`.
  static Tokenizer train_joint(const ParallelCorpus& corpus, const TokenizerOptions& options);
  // Loads a SentencePiece .model file (for example `<model_dir>/spm.model`).
  static Tokenizer load(const std::string& model_path);
  // Writes `<model_dir>/spm.model` (atomically; creates model_dir) and returns its path.
  std::string save(const std::string& model_dir) const;

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  int32_t vocab_size() const;
  std::string piece(int32_t id) const;
  // Subword ids of `text`, without <bos> or <eos>.
  std::vector<int32_t> encode(std::string_view text) const;
  // Encodes every sentence (in parallel; the result does not depend on the thread count).
  std::vector<std::vector<int32_t>> encode_all(const std::vector<std::string>& texts) const;
  // Text of `ids`; pad, bos and eos produce nothing. Throws std::invalid_argument for an id
  // outside [0, vocab_size).
  std::string decode(const std::vector<int32_t>& ids) const;
  // The model file's bytes (what save writes).
  const std::string& serialized() const { return serialized_; }

 private:
  explicit Tokenizer(std::string serialized, const std::string& origin);
  void check_id(int32_t id) const;  // std::invalid_argument outside [0, vocab_size)

  std::string serialized_;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
};

}  // namespace qkv::data
