#include "data/lm_tokenizer.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <stdexcept>

#include "data/byte_bpe.h"
#include "data/char_tokenizer.h"
#include "data/sentencepiece_lm.h"
#include "data/utf8.h"
#include "io/atomic_file.h"

namespace qkv::data {
namespace {

constexpr const char* kSettingsFile = "tokenizer.yaml";

// Bytes of the well-formed prefix of a UTF-8 sequence starting at text[i] (at least 1), and
// whether it is complete: Python's decoder replaces such a maximal ill-formed prefix by one
// U+FFFD (the Unicode standard's "maximal subpart" practice).
std::pair<size_t, bool> sequence_prefix(std::string_view text, size_t i) {
  auto byte = [&](size_t k) { return uint8_t(text[k]); };
  uint8_t b0 = byte(i);
  if (b0 < 0x80) return {1, true};
  size_t len;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return {1, false};
  }
  for (size_t k = 1; k < len; ++k) {
    if (i + k >= text.size()) return {k, false};
    uint8_t b = byte(i + k);
    if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) return {k, false};
  }
  return {len, true};
}

std::string replace_invalid_utf8(std::string_view bytes) {
  std::string text;
  text.reserve(bytes.size());
  for (size_t i = 0; i < bytes.size();) {
    auto [length, complete] = sequence_prefix(bytes, i);
    if (complete)
      text.append(bytes.substr(i, length));
    else
      text += "\xEF\xBF\xBD";  // U+FFFD
    i += length;
  }
  return text;
}

std::string require_string(const YAML::Node& root, const std::string& key,
                           const std::string& path) {
  if (!root[key]) throw std::runtime_error(path + ": missing \"" + key + "\"");
  try {
    return root[key].as<std::string>();
  } catch (const YAML::Exception&) {
    throw std::runtime_error(path + ": \"" + key + "\" must be a string");
  }
}

}  // namespace

std::string LmTokenizer::decode(const std::vector<int32_t>& ids) const {
  return replace_invalid_utf8(decode_bytes(ids));
}

void LmTokenizer::check_utf8(std::string_view text) {
  size_t bad = find_invalid_utf8(text);
  if (bad != std::string_view::npos)
    throw std::invalid_argument("invalid UTF-8 at byte " + std::to_string(bad) + " of the text");
}

void LmTokenizer::check_id(int32_t id) const {
  if (id < 0 || id >= vocab_size())
    throw std::invalid_argument("token id " + std::to_string(id) + " outside the vocabulary [0, " +
                                std::to_string(vocab_size()) + ")");
}

LmTokenizer::TokenPieces LmTokenizer::special_pieces() const {
  TokenPieces pieces;
  for (int32_t id : {bos_id_, eos_id_})
    if (id >= 0) pieces.emplace_back(piece(id), id);
  return pieces;
}

void LmTokenizer::write_settings(const std::string& model_dir) const {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "type" << YAML::Value << type();
  out << YAML::Key << "add-bos" << YAML::Value << add_bos_;
  out << YAML::Key << "bos-token" << YAML::Value << YAML::DoubleQuoted
      << (bos_id_ >= 0 ? piece(bos_id_) : "");
  out << YAML::Key << "eos-token" << YAML::Value << YAML::DoubleQuoted
      << (eos_id_ >= 0 ? piece(eos_id_) : "");
  out << YAML::EndMap;
  write_file_atomic((std::filesystem::path(model_dir) / kSettingsFile).string(),
                    std::string(out.c_str()) + "\n");
}

bool LmTokenizer::exists_in(const std::string& model_dir) {
  return std::filesystem::exists(std::filesystem::path(model_dir) / kSettingsFile);
}

std::unique_ptr<LmTokenizer> LmTokenizer::load_dir(const std::string& model_dir) {
  std::filesystem::path dir(model_dir);
  std::string path = (dir / kSettingsFile).string();
  YAML::Node root;
  try {
    root = YAML::Load(read_file(path, "tokenizer settings"));
  } catch (const YAML::Exception& e) {
    throw std::runtime_error(path + ": not valid YAML: " + e.what());
  }
  if (!root.IsMap()) throw std::runtime_error(path + ": expected a YAML mapping");
  Settings settings;
  settings.type = require_string(root, "type", path);
  if (!root["add-bos"]) throw std::runtime_error(path + ": missing \"add-bos\"");
  try {
    settings.add_bos = root["add-bos"].as<bool>();
  } catch (const YAML::Exception&) {
    throw std::runtime_error(path + ": \"add-bos\" must be true or false");
  }
  settings.bos_token = require_string(root, "bos-token", path);
  settings.eos_token = require_string(root, "eos-token", path);
  if (settings.type == "chars") return CharTokenizer::load(model_dir, settings);
  if (settings.type == "byte-bpe") return ByteBpe::load(model_dir, settings);
  if (settings.type == "sentencepiece") return SentencePieceLm::load(model_dir, settings);
  throw std::runtime_error(path + ": unknown tokenizer type \"" + settings.type +
                           "\" (chars, byte-bpe or sentencepiece)");
}

std::unique_ptr<LmTokenizer> LmTokenizer::train(const std::string& type,
                                                const std::vector<std::string>& documents,
                                                const LmTokenizerOptions& options) {
  if (type == "chars") return CharTokenizer::train(documents);
  if (type == "sentencepiece") return SentencePieceLm::train(documents, options);
  throw std::invalid_argument("cannot train a tokenizer of type \"" + type +
                              "\" (chars or sentencepiece)");
}

}  // namespace qkv::data
