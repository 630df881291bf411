// nanoGPT's character-level tokenizer: id 0 is <|endoftext|> (eos; no bos), then one token per
// code point seen in training, sorted by code point. Stored as chars.json, a JSON array of the
// token of each id.
#pragma once
#include <unordered_map>

#include "data/lm_tokenizer.h"

namespace qkv::data {

class CharTokenizer : public LmTokenizer {
 public:
  static constexpr const char* kEndOfText = "<|endoftext|>";

  // std::invalid_argument naming the document and byte offset of invalid UTF-8.
  static std::unique_ptr<CharTokenizer> train(const std::vector<std::string>& documents);
  static std::unique_ptr<CharTokenizer> load(const std::string& model_dir,
                                             const Settings& settings);

  std::string type() const override { return "chars"; }
  int32_t vocab_size() const override { return int32_t(tokens_.size()); }
  // The bos/eos pieces in the text become their ids.
  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode_bytes(const std::vector<int32_t>& ids) const override;
  std::string piece(int32_t id) const override;
  void save(const std::string& model_dir) const override;

 private:
  // `origin` names chars.json in errors: every token but the special ones is one code point.
  CharTokenizer(std::vector<std::string> tokens, int32_t bos_id, int32_t eos_id, bool add_bos,
                const std::string& origin);
  void encode_plain(std::string_view text, std::vector<int32_t>& ids) const;

  std::vector<std::string> tokens_;                 // id -> token
  std::unordered_map<char32_t, int32_t> char_ids_;  // code point -> id
};

}  // namespace qkv::data
