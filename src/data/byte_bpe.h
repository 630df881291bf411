// GPT-2's byte-level BPE, from its published definition (openai/gpt-2 encoder.py): the text's
// UTF-8 bytes, each shown as a printable character (bytes_to_unicode), cut into words by
// gpt2_pretokenize, each word merged pair by pair, the lowest merge rank first, until no merge
// applies. Files: vocab.json (token -> id) and merges.txt (one merge "a b" a line, the rank
// being the line's order; a first "#version" line is skipped), kept byte for byte.
#pragma once
#include <mutex>
#include <unordered_map>

#include "data/lm_tokenizer.h"

namespace qkv::data {

class ByteBpe : public LmTokenizer {
 public:
  // std::runtime_error naming the file (and line) when a file is missing or corrupt: ids not
  // 0..n-1, a byte without its token, a merge of or into tokens the vocabulary lacks.
  static std::unique_ptr<ByteBpe> load(const std::string& model_dir, const Settings& settings);

  std::string type() const override { return "byte-bpe"; }
  int32_t vocab_size() const override { return int32_t(tokens_.size()); }
  // The bos/eos tokens in the text become their ids (as transformers' GPT-2 tokenizer does).
  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode_bytes(const std::vector<int32_t>& ids) const override;
  std::string piece(int32_t id) const override;
  void save(const std::string& model_dir) const override;

 private:
  struct Merge {
    int32_t first, second, merged;  // ids
  };
  ByteBpe(std::vector<std::string> tokens, int32_t bos_id, int32_t eos_id, bool add_bos,
          const std::string& vocab_path);
  static uint64_t pair_key(int32_t a, int32_t b) {
    return uint64_t(uint32_t(a)) << 32 | uint32_t(b);
  }
  // Ranks the merges of merges.txt; std::runtime_error naming the file and line.
  void read_merges(const std::string& path);
  int32_t rank_of(int32_t first, int32_t second) const;   // -1: no merge
  std::vector<int32_t> bpe(std::string_view word) const;  // ids of one word
  void encode_plain(std::string_view text, std::vector<int32_t>& ids) const;

  std::string vocab_json_, merges_txt_;          // the files as read
  std::vector<std::string> tokens_;              // id -> token
  std::vector<std::string> bytes_;               // id -> the bytes it stands for
  int32_t byte_ids_[256];                        // byte -> id of its one-character token
  std::vector<Merge> merges_;                    // rank -> merge
  std::unordered_map<uint64_t, int32_t> ranks_;  // pair_key(first, second) -> rank
  // The ids of the words met so far (emptied past 2^20 words), shared by the threads that
  // encode at once under cache_mutex_.
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;  // word -> ids
};

}  // namespace qkv::data
