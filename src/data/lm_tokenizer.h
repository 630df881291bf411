// The tokenizers of the GPT-style language models, behind one interface:
// - "chars": one token per code point seen in training (nanoGPT's character-level model);
// - "byte-bpe": byte-level BPE, GPT-2's (vocab.json + merges.txt) or Llama 3's (tokenizer.json);
// - "sentencepiece": a SentencePiece model (Llama's tokenizer.model, or one trained here).
// A model directory holds tokenizer.yaml (type, add-bos, bos-token, eos-token; "" = none) plus
// the type's own files: chars.json, vocab.json + merges.txt or tokenizer.json, or spm.model.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qkv::data {

struct LmTokenizerOptions {
  int vocab_size = 4096;      // sentencepiece only
  int64_t max_sentences = 0;  // sentencepiece: train on a seeded sample of this many lines
  uint64_t seed = 1;          // picks that sample
  int threads = 2;  // SentencePiece's training threads (a BPE model does not depend on it)
  double character_coverage = 0.9995;  // the rarest characters are left to byte fallback
};

class LmTokenizer {
 public:
  virtual ~LmTokenizer() = default;
  virtual std::string type() const = 0;  // "chars", "byte-bpe", "sentencepiece"
  virtual int32_t vocab_size() const = 0;
  // Ids of text, without BOS/EOS. std::invalid_argument for invalid UTF-8 (naming the byte
  // offset) and, for chars, a character the vocabulary lacks (naming it).
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // The raw bytes of ids (a byte-level token may end inside a UTF-8 character); bos and eos give
  // nothing. std::invalid_argument for an id outside the vocabulary.
  virtual std::string decode_bytes(const std::vector<int32_t>& ids) const = 0;
  // decode_bytes with invalid UTF-8 replaced by U+FFFD as Python's bytes.decode("utf-8",
  // "replace") does (one per maximal ill-formed subsequence), as transformers' decode.
  std::string decode(const std::vector<int32_t>& ids) const;
  int32_t bos_id() const { return bos_id_; }  // -1: none
  int32_t eos_id() const { return eos_id_; }  // -1: none
  bool add_bos() const { return add_bos_; }   // whether a sequence starts with bos
  // The vocabulary's string of `id` (std::invalid_argument outside the vocabulary).
  virtual std::string piece(int32_t id) const = 0;
  // Writes tokenizer.yaml and the type's files into model_dir (atomically; creates it).
  virtual void save(const std::string& model_dir) const = 0;

  // Reads what save (or qkv convert) wrote; std::runtime_error naming the file when it is
  // missing or corrupt.
  static std::unique_ptr<LmTokenizer> load_dir(const std::string& model_dir);
  static bool exists_in(const std::string& model_dir);  // whether it has a tokenizer.yaml
  // Trains a tokenizer of `type` ("chars" or "sentencepiece") on documents.
  static std::unique_ptr<LmTokenizer> train(const std::string& type,
                                            const std::vector<std::string>& documents,
                                            const LmTokenizerOptions& options);

 protected:
  // tokenizer.yaml's settings, the special tokens as pieces.
  struct Settings {
    std::string type;
    bool add_bos = false;
    std::string bos_token, eos_token;
  };
  LmTokenizer(int32_t bos_id, int32_t eos_id, bool add_bos)
      : bos_id_(bos_id), eos_id_(eos_id), add_bos_(add_bos) {}
  void write_settings(const std::string& model_dir) const;  // tokenizer.yaml
  // std::invalid_argument naming the byte offset of the first invalid UTF-8 byte.
  static void check_utf8(std::string_view text);
  void check_id(int32_t id) const;
  bool is_special(int32_t id) const { return id >= 0 && (id == bos_id_ || id == eos_id_); }
  using TokenPieces = std::vector<std::pair<std::string, int32_t>>;  // piece, id
  TokenPieces special_pieces() const;                                // bos and eos, those there are
  // Calls plain(segment) for the text between occurrences of the pieces and special(id) for
  // each occurrence (the earliest first, the longest of those starting there).
  template <class Plain, class Special>
  static void split_on_pieces(std::string_view text, const TokenPieces& pieces, Plain plain,
                              Special special);

 private:
  int32_t bos_id_, eos_id_;
  bool add_bos_;
};

template <class Plain, class Special>
void LmTokenizer::split_on_pieces(std::string_view text, const TokenPieces& pieces, Plain plain,
                                  Special special) {
  // next[k]: where pieces[k] occurs first at or after `from` (npos: nowhere), found again only
  // when passed, so that many pieces cost one search each per occurrence taken.
  std::vector<size_t> next(pieces.size());
  for (size_t k = 0; k < pieces.size(); ++k) next[k] = text.find(pieces[k].first);
  for (size_t from = 0;;) {
    size_t at = std::string_view::npos, length = 0;
    int32_t id = -1;
    for (size_t k = 0; k < pieces.size(); ++k) {
      if (next[k] < from) next[k] = text.find(pieces[k].first, from);
      const std::string& piece = pieces[k].first;
      if (next[k] < at || (next[k] == at && at != std::string_view::npos && piece.size() > length))
        at = next[k], length = piece.size(), id = pieces[k].second;
    }
    if (at == std::string_view::npos) {
      if (from < text.size()) plain(text.substr(from));
      return;
    }
    if (at > from) plain(text.substr(from, at - from));
    special(id);
    from = at + length;
  }
}

}  // namespace qkv::data
