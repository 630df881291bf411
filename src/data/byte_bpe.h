// Byte-level BPE, from its published definition (openai/gpt-2 encoder.py): the text's UTF-8
// bytes, each shown as a printable character (bytes_to_unicode), cut into words by a
// pre-tokenisation pattern (data/bpe_pretokenizer.h), each word merged pair by pair, the lowest
// merge rank first, until no merge applies. Its files, kept byte for byte, are either
// - GPT-2's vocab.json (token -> id) and merges.txt (one merge "a b" a line, the rank being the
//   line's order; a first "#version" line is skipped), with GPT-2's pattern, the bos and eos
//   tokens split off the text first; or
// - tokenizer.json (data/tokenizer_json.h: Llama 3's, or GPT-2's), used where the model
//   directory holds one.
#pragma once
#include <mutex>
#include <unordered_map>

#include "data/bpe_pretokenizer.h"
#include "data/lm_tokenizer.h"

namespace qkv::data {

class ByteBpe : public LmTokenizer {
 public:
  // std::runtime_error naming the file (and line or field) when a file is missing or corrupt:
  // ids not 0..n-1, a byte without its token, a merge of or into tokens the vocabulary lacks.
  static std::unique_ptr<ByteBpe> load(const std::string& model_dir, const Settings& settings);
  // Whether model_dir's files are a tokenizer.json (rather than vocab.json and merges.txt).
  static bool has_tokenizer_json(const std::string& model_dir);

  std::string type() const override { return "byte-bpe"; }
  int32_t vocab_size() const override { return int32_t(tokens_.size()); }
  // The bos/eos tokens in the text (tokenizer.json: its added tokens) become their ids, as
  // transformers' tokenizers do.
  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode_bytes(const std::vector<int32_t>& ids) const override;
  std::string piece(int32_t id) const override;
  void save(const std::string& model_dir) const override;

 private:
  struct Merge {
    int32_t first, second, merged;  // ids
  };
  // tokens: id -> token; added: id -> whether it is an added token, which stands for its own
  // text (the others for the bytes of their characters).
  ByteBpe(std::vector<std::string> tokens, const std::vector<bool>& added, int32_t bos_id,
          int32_t eos_id, bool add_bos, const std::string& vocab_path);
  static uint64_t pair_key(int32_t a, int32_t b) {
    return uint64_t(uint32_t(a)) << 32 | uint32_t(b);
  }
  static std::unique_ptr<ByteBpe> load_tokenizer_json(const std::string& path,
                                                      const Settings& settings);
  // Ranks the merges of merges.txt; std::runtime_error naming the file and line.
  void read_merges(const std::string& path);
  // Appends the merge a + b; std::runtime_error naming `where` when a token is unknown.
  void add_merge(const std::string& a, const std::string& b, const std::string& where);
  int32_t rank_of(int32_t first, int32_t second) const;   // -1: no merge
  std::vector<int32_t> bpe(std::string_view word) const;  // ids of one word
  void encode_plain(std::string_view text, std::vector<int32_t>& ids) const;

  std::string vocab_json_, merges_txt_;  // the files as read, or
  std::string tokenizer_json_;           // this one
  Pretokenizer pretokenizer_ = Pretokenizer::gpt2;
  TokenPieces split_pieces_;  // split off the text first: bos and eos, or the added tokens
  // ignore_merges: a word that is one of the model's tokens is that token, unmerged.
  bool ignore_merges_ = false;
  std::vector<std::string> tokens_;                     // id -> token
  std::unordered_map<std::string, int32_t> model_ids_;  // token -> id, the added tokens left out
  std::vector<std::string> bytes_;                      // id -> the bytes it stands for
  int32_t byte_ids_[256];                               // byte -> id of its one-character token
  std::vector<Merge> merges_;                           // rank -> merge
  std::unordered_map<uint64_t, int32_t> ranks_;         // pair_key(first, second) -> rank
  // The ids of the words met so far (emptied past 2^20 words), shared by the threads that
  // encode at once under cache_mutex_.
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;  // word -> ids
};

}  // namespace qkv::data
