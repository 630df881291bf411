#include "data/char_tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "data/utf8.h"
#include "eval/unicode_text.h"
#include "io/atomic_file.h"

namespace qkv::data {
namespace {

constexpr const char* kCharsFile = "chars.json";

std::string describe(char32_t c) {
  char code[16];
  std::snprintf(code, sizeof code, "U+%04X", unsigned(c));
  return std::string(code) + " '" + encode_utf8(std::u32string(1, c)) + "'";
}

// The id of `token` in `tokens` ("" -> -1); std::runtime_error naming `origin` when absent.
int32_t special_id(const std::vector<std::string>& tokens, const std::string& token,
                   const std::string& what, const std::string& origin) {
  if (token.empty()) return -1;
  auto it = std::find(tokens.begin(), tokens.end(), token);
  if (it == tokens.end())
    throw std::runtime_error(origin + ": the " + what + " \"" + token + "\" is not a token");
  return int32_t(it - tokens.begin());
}

}  // namespace

CharTokenizer::CharTokenizer(std::vector<std::string> tokens, int32_t bos_id, int32_t eos_id,
                             bool add_bos, const std::string& origin)
    : LmTokenizer(bos_id, eos_id, add_bos), tokens_(std::move(tokens)) {
  for (size_t id = 0; id < tokens_.size(); ++id) {
    if (is_special(int32_t(id))) continue;
    std::u32string c;
    try {
      c = decode_utf8(tokens_[id]);
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(origin + ": token " + std::to_string(id) + ": " + e.what());
    }
    if (c.size() != 1)
      throw std::runtime_error(origin + ": token " + std::to_string(id) + " \"" + tokens_[id] +
                               "\" is not one character");
    if (!char_ids_.emplace(c[0], int32_t(id)).second)
      throw std::runtime_error(origin + ": " + describe(c[0]) + " appears twice");
  }
}

std::unique_ptr<CharTokenizer> CharTokenizer::train(const std::vector<std::string>& documents) {
  std::set<char32_t> seen;
  for (size_t d = 0; d < documents.size(); ++d) {
    size_t bad = find_invalid_utf8(documents[d]);
    if (bad != std::string_view::npos)
      throw std::invalid_argument("document " + std::to_string(d) + ": invalid UTF-8 at byte " +
                                  std::to_string(bad));
    for (char32_t c : decode_utf8(documents[d])) seen.insert(c);
  }
  std::vector<std::string> tokens = {kEndOfText};
  for (char32_t c : seen) tokens.push_back(encode_utf8(std::u32string(1, c)));
  return std::unique_ptr<CharTokenizer>(
      new CharTokenizer(std::move(tokens), -1, 0, false, "trained tokenizer"));
}

std::unique_ptr<CharTokenizer> CharTokenizer::load(const std::string& model_dir,
                                                   const Settings& settings) {
  std::string path = (std::filesystem::path(model_dir) / kCharsFile).string();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(path, "character vocabulary"));
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path + ": not valid JSON: " + e.what());
  }
  if (!j.is_array() || j.empty())
    throw std::runtime_error(path + ": expected a JSON array of strings (the token of each id)");
  std::vector<std::string> tokens;
  for (const auto& token : j) {
    if (!token.is_string())
      throw std::runtime_error(path + ": token " + std::to_string(tokens.size()) +
                               " is not a string: " + token.dump());
    tokens.push_back(token.get<std::string>());
  }
  std::string yaml = (std::filesystem::path(model_dir) / "tokenizer.yaml").string();
  int32_t bos = special_id(tokens, settings.bos_token, "bos-token", yaml);
  int32_t eos = special_id(tokens, settings.eos_token, "eos-token", yaml);
  return std::unique_ptr<CharTokenizer>(
      new CharTokenizer(std::move(tokens), bos, eos, settings.add_bos, path));
}

void CharTokenizer::encode_plain(std::string_view text, std::vector<int32_t>& ids) const {
  for (char32_t c : decode_utf8(text)) {
    auto it = char_ids_.find(c);
    if (it == char_ids_.end())
      throw std::invalid_argument("character " + describe(c) + " is not in the vocabulary");
    ids.push_back(it->second);
  }
}

std::vector<int32_t> CharTokenizer::encode(std::string_view text) const {
  check_utf8(text);
  std::vector<int32_t> ids;
  ids.reserve(text.size());
  split_on_pieces(
      text, special_pieces(), [&](std::string_view plain) { encode_plain(plain, ids); },
      [&](int32_t id) { ids.push_back(id); });
  return ids;
}

std::string CharTokenizer::decode_bytes(const std::vector<int32_t>& ids) const {
  std::string bytes;
  for (int32_t id : ids) {
    check_id(id);
    if (!is_special(id)) bytes += tokens_[size_t(id)];
  }
  return bytes;
}

std::string CharTokenizer::piece(int32_t id) const {
  check_id(id);
  return tokens_[size_t(id)];
}

void CharTokenizer::save(const std::string& model_dir) const {
  std::filesystem::create_directories(model_dir);
  write_file_atomic((std::filesystem::path(model_dir) / kCharsFile).string(),
                    nlohmann::json(tokens_).dump() + "\n");
  write_settings(model_dir);
}

}  // namespace qkv::data
