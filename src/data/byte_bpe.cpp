#include "data/byte_bpe.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "data/tokenizer_json.h"
#include "eval/unicode_text.h"
#include "io/atomic_file.h"

namespace qkv::data {
namespace {

constexpr size_t kMaxCachedWords = 1 << 20;  // the cache starts over beyond this

// GPT-2's bytes_to_unicode: the printable bytes ! .. ~, ¡ .. ¬ and ® .. ÿ stand for themselves,
// the other 68 bytes, in order, for U+0100, U+0101, ...
const std::array<char32_t, 256>& byte_to_char() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      t[b] = printable ? char32_t(b) : next++;
    }
    return t;
  }();
  return table;
}

// The UTF-8 text of each byte's character.
const std::array<std::string, 256>& byte_texts() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    for (int b = 0; b < 256; ++b) t[b] = encode_utf8(std::u32string(1, byte_to_char()[b]));
    return t;
  }();
  return table;
}

// The bytes a token stands for; a token with characters outside the byte table (an added
// token) stands for its own UTF-8 text.
std::string token_bytes(const std::string& token) {
  static const std::unordered_map<char32_t, char> char_to_byte = [] {
    std::unordered_map<char32_t, char> m;
    for (int b = 0; b < 256; ++b) m[byte_to_char()[b]] = char(b);
    return m;
  }();
  std::string bytes;
  for (char32_t c : decode_utf8(token)) {
    auto it = char_to_byte.find(c);
    if (it == char_to_byte.end()) return token;
    bytes.push_back(it->second);
  }
  return bytes;
}

std::vector<std::string> read_vocab(const std::string& text, const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path + ": not valid JSON: " + e.what());
  }
  if (!j.is_object() || j.empty())
    throw std::runtime_error(path + ": expected a JSON object {\"token\": id, ...}");
  std::vector<std::string> tokens(j.size());
  std::vector<bool> seen(j.size(), false);
  for (auto& [token, id] : j.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= int64_t(j.size()))
      throw std::runtime_error(path + ": id of \"" + token + "\" must be an integer in [0, " +
                               std::to_string(j.size()) + ")");
    size_t i = id.get<size_t>();
    if (seen[i]) throw std::runtime_error(path + ": id " + std::to_string(i) + " appears twice");
    seen[i] = true;
    tokens[i] = token;
  }
  return tokens;
}

// The id of a special token of tokenizer.yaml ("": none, -1).
int32_t special_id(const std::vector<std::string>& tokens, const std::string& token,
                   const std::string& model_dir, const char* what, const char* file) {
  if (token.empty()) return -1;
  auto it = std::find(tokens.begin(), tokens.end(), token);
  if (it == tokens.end())
    throw std::runtime_error((std::filesystem::path(model_dir) / "tokenizer.yaml").string() +
                             ": the " + what + " \"" + token + "\" is not in " + file);
  return int32_t(it - tokens.begin());
}

}  // namespace

ByteBpe::ByteBpe(std::vector<std::string> tokens, const std::vector<bool>& added, int32_t bos_id,
                 int32_t eos_id, bool add_bos, const std::string& vocab_path)
    : LmTokenizer(bos_id, eos_id, add_bos), tokens_(std::move(tokens)) {
  for (size_t i = 0; i < tokens_.size(); ++i)
    if (!added[i]) model_ids_.emplace(tokens_[i], int32_t(i));
  for (int b = 0; b < 256; ++b) {
    auto it = model_ids_.find(byte_texts()[b]);
    if (it == model_ids_.end())
      throw std::runtime_error(vocab_path + ": no token for byte " + std::to_string(b) + " (\"" +
                               byte_texts()[b] + "\")");
    byte_ids_[b] = it->second;
  }
  bytes_.reserve(tokens_.size());
  for (size_t i = 0; i < tokens_.size(); ++i)
    bytes_.push_back(added[i] ? tokens_[i] : token_bytes(tokens_[i]));
}

bool ByteBpe::has_tokenizer_json(const std::string& model_dir) {
  return std::filesystem::exists(std::filesystem::path(model_dir) / "tokenizer.json");
}

std::unique_ptr<ByteBpe> ByteBpe::load(const std::string& model_dir, const Settings& settings) {
  if (has_tokenizer_json(model_dir)) return load_tokenizer_json(model_dir, settings);
  std::filesystem::path dir(model_dir);
  std::string vocab_path = (dir / "vocab.json").string();
  std::string vocab_json = read_file(vocab_path, "BPE vocabulary");
  std::vector<std::string> tokens = read_vocab(vocab_json, vocab_path);
  int32_t bos = special_id(tokens, settings.bos_token, model_dir, "bos-token", "vocab.json");
  int32_t eos = special_id(tokens, settings.eos_token, model_dir, "eos-token", "vocab.json");
  std::vector<bool> added(tokens.size(), false);
  std::unique_ptr<ByteBpe> bpe(
      new ByteBpe(std::move(tokens), added, bos, eos, settings.add_bos, vocab_path));
  bpe->vocab_json_ = std::move(vocab_json);
  bpe->read_merges((dir / "merges.txt").string());
  bpe->split_pieces_ = bpe->special_pieces();
  return bpe;
}

std::unique_ptr<ByteBpe> ByteBpe::load_tokenizer_json(const std::string& model_dir,
                                                      const Settings& settings) {
  std::string path = (std::filesystem::path(model_dir) / "tokenizer.json").string();
  std::string text = read_file(path, "tokenizer");
  TokenizerJson t = parse_tokenizer_json(text, path);
  int32_t bos = special_id(t.tokens, settings.bos_token, model_dir, "bos-token", "tokenizer.json");
  int32_t eos = special_id(t.tokens, settings.eos_token, model_dir, "eos-token", "tokenizer.json");
  std::vector<bool> added(t.tokens.size());
  for (size_t i = 0; i < added.size(); ++i) added[i] = !t.in_model[i];
  std::unique_ptr<ByteBpe> bpe(new ByteBpe(t.tokens, added, bos, eos, settings.add_bos, path));
  bpe->tokenizer_json_ = std::move(text);
  bpe->pretokenizer_ = t.pretokenizer;
  for (size_t rank = 0; rank < t.merges.size(); ++rank)
    bpe->add_merge(t.merges[rank].first, t.merges[rank].second,
                   path + ": model.merges[" + std::to_string(rank) + "]");
  bpe->ignore_merges_ = t.ignore_merges;
  bpe->split_pieces_ = std::move(t.added_tokens);
  for (auto& piece : bpe->special_pieces())
    if (std::find(bpe->split_pieces_.begin(), bpe->split_pieces_.end(), piece) ==
        bpe->split_pieces_.end())
      bpe->split_pieces_.push_back(piece);
  return bpe;
}

void ByteBpe::read_merges(const std::string& path) {
  merges_txt_ = read_file(path, "BPE merges");
  std::string_view rest = merges_txt_;
  for (size_t line = 1; !rest.empty(); ++line) {
    size_t end = rest.find('\n');
    std::string_view text = rest.substr(0, end);
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    if (text.empty() || (line == 1 && text.starts_with("#version"))) continue;
    size_t space = text.find(' ');
    if (space == 0 || space == std::string_view::npos || space + 1 == text.size() ||
        text.find(' ', space + 1) != std::string_view::npos)
      throw std::runtime_error(path + ":" + std::to_string(line) +
                               ": expected two tokens separated by a space, got \"" +
                               std::string(text) + "\"");
    add_merge(std::string(text.substr(0, space)), std::string(text.substr(space + 1)),
              path + ":" + std::to_string(line));
  }
}

void ByteBpe::add_merge(const std::string& a, const std::string& b, const std::string& where) {
  auto id_of = [&](const std::string& token) {
    auto it = model_ids_.find(token);
    if (it == model_ids_.end())
      throw std::runtime_error(where + ": \"" + token + "\" is not in the vocabulary");
    return it->second;
  };
  // A merge listed twice keeps its last rank, as encoder.py's dict does.
  Merge merge{id_of(a), id_of(b), id_of(a + b)};
  ranks_[pair_key(merge.first, merge.second)] = int32_t(merges_.size());
  merges_.push_back(merge);
}

int32_t ByteBpe::rank_of(int32_t first, int32_t second) const {
  auto it = ranks_.find(pair_key(first, second));
  return it == ranks_.end() ? -1 : it->second;
}

// encoder.py's loop (merge every occurrence of the lowest-ranked pair, left to right, until no
// pair has a rank) in O(n log n): the word is a linked list of symbols, each kept at the byte
// position where it starts, and the pairs wait in buckets by rank. A bucket is taken whole, in
// position order, checking each pair still stands; a merge files the two pairs it makes (never
// of the bucket's own rank: a merged symbol is longer than either part).
std::vector<int32_t> ByteBpe::bpe(std::string_view word) const {
  if (ignore_merges_) {
    std::string characters;
    for (char b : word) characters += byte_texts()[uint8_t(b)];
    auto it = model_ids_.find(characters);
    if (it != model_ids_.end()) return {it->second};
  }
  const int32_t n = int32_t(word.size());
  std::vector<int32_t> symbol(n), next(n), prev(n);  // [n] each, valid where alive
  std::vector<bool> alive(n, true);
  for (int32_t i = 0; i < n; ++i) {
    symbol[i] = byte_ids_[uint8_t(word[i])];
    next[i] = i + 1;  // n: none
    prev[i] = i - 1;  // -1: none
  }
  std::map<int32_t, std::vector<int32_t>> buckets;  // rank -> positions of pairs of that rank
  auto file_pair = [&](int32_t i) {
    if (i < 0 || next[i] >= n) return;
    int32_t rank = rank_of(symbol[i], symbol[next[i]]);
    if (rank >= 0) buckets[rank].push_back(i);
  };
  for (int32_t i = 0; i + 1 < n; ++i) file_pair(i);
  while (!buckets.empty()) {
    auto bucket = buckets.extract(buckets.begin());
    const Merge& merge = merges_[size_t(bucket.key())];
    std::vector<int32_t>& positions = bucket.mapped();
    std::sort(positions.begin(), positions.end());
    for (int32_t i : positions) {
      if (!alive[i] || next[i] >= n || symbol[i] != merge.first || symbol[next[i]] != merge.second)
        continue;
      int32_t j = next[i];
      symbol[i] = merge.merged;
      alive[j] = false;
      next[i] = next[j];
      if (next[j] < n) prev[next[j]] = i;
      file_pair(prev[i]);
      file_pair(i);
    }
  }
  std::vector<int32_t> ids;
  for (int32_t i = 0; i < n; i = next[i]) ids.push_back(symbol[i]);
  return ids;
}

void ByteBpe::encode_plain(std::string_view text, std::vector<int32_t>& ids) const {
  std::vector<std::string_view> words;
  pretokenize(pretokenizer_, text, words);
  std::lock_guard<std::mutex> lock(cache_mutex_);
  for (std::string_view word : words) {
    auto it = cache_.find(std::string(word));
    if (it == cache_.end()) {
      if (cache_.size() >= kMaxCachedWords) cache_.clear();
      it = cache_.emplace(std::string(word), bpe(word)).first;
    }
    ids.insert(ids.end(), it->second.begin(), it->second.end());
  }
}

std::vector<int32_t> ByteBpe::encode(std::string_view text) const {
  check_utf8(text);
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3);
  split_on_pieces(
      text, split_pieces_, [&](std::string_view plain) { encode_plain(plain, ids); },
      [&](int32_t id) { ids.push_back(id); });
  return ids;
}

std::string ByteBpe::decode_bytes(const std::vector<int32_t>& ids) const {
  std::string bytes;
  for (int32_t id : ids) {
    check_id(id);
    if (!is_special(id)) bytes += bytes_[size_t(id)];
  }
  return bytes;
}

std::string ByteBpe::piece(int32_t id) const {
  check_id(id);
  return tokens_[size_t(id)];
}

void ByteBpe::save(const std::string& model_dir) const {
  std::filesystem::create_directories(model_dir);
  std::filesystem::path dir(model_dir);
  if (!tokenizer_json_.empty()) {
    write_file_atomic((dir / "tokenizer.json").string(), tokenizer_json_);
  } else {
    write_file_atomic((dir / "vocab.json").string(), vocab_json_);
    write_file_atomic((dir / "merges.txt").string(), merges_txt_);
  }
  write_settings(model_dir);
}

}  // namespace qkv::data
