// Subword tokenizer, in one of two forms:
// - joint (what `qkv train` makes): one SentencePiece model shared by source and target, whose
//   own ids are the model's, with fixed ids for the special symbols (pad 0, unk 1, bos 2, eos 3);
// - vocabulary-mapped (Marian / Hugging Face MarianTokenizer): a source and a target
//   SentencePiece model cut text into pieces, and a shared vocabulary (vocab.json, piece -> id)
//   gives their ids; pieces it lacks become <unk>. Special ids are those of "<pad>", "<unk>"
//   and "</s>" in the vocabulary.
// Text goes through SentencePiece's normaliser (by default nmt_nfkc: NFKC, whitespace runs
// folded), so decode(encode(s)) == s for NFKC text whose characters the model has all seen.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace qkv::data {

struct ParallelCorpus;

enum class Side { source, target };

struct SpecialIds {
  int32_t pad = 0, unk = 1, bos = 2, eos = 3;  // bos -1: none (Marian starts with <pad>)
};

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
  // Characters outside the vocabulary become their UTF-8 bytes (pieces <0x00>..<0xFF>)
  // instead of <unk>.
  bool byte_fallback = false;
  // SentencePiece's normalization rule ("identity" keeps the text as it is) and whether runs
  // of whitespace are folded into one space.
  std::string normalization = "nmt_nfkc";
  bool remove_extra_whitespaces = true;
};

// Trains a SentencePiece model on `sentences` with the special ids `ids` (-1: none) and returns
// its file's bytes. The same sentences and options (seed and threads included) give the same
// bytes. std::runtime_error with SentencePiece's message on failure.
std::string train_sentencepiece_model(const std::vector<std::string_view>& sentences,
                                      const TokenizerOptions& options, const SpecialIds& ids);

// A SentencePiece processor of a model file's bytes; std::runtime_error naming `origin` (a path)
// when they are not a SentencePiece model.
std::unique_ptr<sentencepiece::SentencePieceProcessor> load_sentencepiece(
    const std::string& serialized, const std::string& origin);

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
  // A vocabulary-mapped tokenizer from SentencePiece models and a vocab.json. Throws
  // std::runtime_error naming the file for a missing or malformed file, a vocabulary without
  // the special pieces, or duplicate / non-contiguous ids.
  static Tokenizer load_mapped(const std::string& source_spm, const std::string& target_spm,
                               const std::string& vocab_json);
  // What save wrote into model_dir: spm.model, or source.spm + target.spm + vocab.json.
  static Tokenizer load_dir(const std::string& model_dir);
  // Writes the files of load_dir (atomically; creates model_dir).
  void save(const std::string& model_dir) const;

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  bool joint() const { return vocab_.empty(); }
  const SpecialIds& specials() const { return specials_; }
  int32_t vocab_size() const;
  std::string piece(int32_t id) const;
  // Subword ids of `text` with that side's model, without <bos> or <eos>.
  std::vector<int32_t> encode(std::string_view text, Side side = Side::source) const;
  // Encodes every sentence (in parallel; the result does not depend on the thread count).
  std::vector<std::vector<int32_t>> encode_all(const std::vector<std::string>& texts,
                                               Side side = Side::source) const;
  // Text of target-side `ids`; pad, bos and eos produce nothing (and <unk> in a mapped
  // tokenizer, as Hugging Face's decode with skip_special_tokens). Throws
  // std::invalid_argument for an id outside [0, vocab_size).
  std::string decode(const std::vector<int32_t>& ids) const;
  // The (source) SentencePiece model file's bytes.
  const std::string& serialized() const { return serialized_; }
  // The vocabulary of a mapped tokenizer (id -> piece); empty when joint.
  const std::vector<std::string>& vocabulary() const { return vocab_; }

 private:
  using Processor = sentencepiece::SentencePieceProcessor;
  // check_specials: the model's own special ids must be the fixed ones (joint form).
  Tokenizer(std::string serialized, const std::string& origin, bool check_specials = true);
  void check_id(int32_t id) const;  // std::invalid_argument outside [0, vocab_size)
  const Processor& side(Side s) const;
  // false when SentencePiece fails (the caller retries with encode, which throws its message).
  bool try_encode(std::string_view text, Side s, std::vector<int32_t>& ids) const;

  std::string serialized_, target_serialized_;  // target: mapped form only
  std::unique_ptr<Processor> processor_, target_processor_;
  std::vector<std::string> vocab_;  // mapped form: id -> piece
  std::unordered_map<std::string, int32_t> piece_ids_;
  SpecialIds specials_;
};

}  // namespace qkv::data
