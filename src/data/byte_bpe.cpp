#include "data/byte_bpe.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "data/gpt2_pretokenizer.h"
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

}  // namespace

ByteBpe::ByteBpe(std::vector<std::string> tokens, int32_t bos_id, int32_t eos_id, bool add_bos,
                 const std::string& vocab_path)
    : LmTokenizer(bos_id, eos_id, add_bos), tokens_(std::move(tokens)) {
  std::unordered_map<std::string, int32_t> ids;
  for (size_t i = 0; i < tokens_.size(); ++i) ids.emplace(tokens_[i], int32_t(i));
  for (int b = 0; b < 256; ++b) {
    std::string token = encode_utf8(std::u32string(1, byte_to_char()[b]));
    auto it = ids.find(token);
    if (it == ids.end())
      throw std::runtime_error(vocab_path + ": no token for byte " + std::to_string(b) + " (\"" +
                               token + "\")");
    byte_ids_[b] = it->second;
  }
  bytes_.reserve(tokens_.size());
  for (const auto& token : tokens_) bytes_.push_back(token_bytes(token));
}

std::unique_ptr<ByteBpe> ByteBpe::load(const std::string& model_dir, const Settings& settings) {
  std::filesystem::path dir(model_dir);
  std::string vocab_path = (dir / "vocab.json").string();
  std::string merges_path = (dir / "merges.txt").string();
  std::string vocab_json = read_file(vocab_path, "BPE vocabulary");
  std::vector<std::string> tokens = read_vocab(vocab_json, vocab_path);
  auto find_special = [&](const std::string& token, const char* what) {
    if (token.empty()) return -1;
    auto it = std::find(tokens.begin(), tokens.end(), token);
    if (it == tokens.end())
      throw std::runtime_error((dir / "tokenizer.yaml").string() + ": the " + what + " \"" + token +
                               "\" is not in vocab.json");
    return int32_t(it - tokens.begin());
  };
  int32_t bos = find_special(settings.bos_token, "bos-token");
  int32_t eos = find_special(settings.eos_token, "eos-token");
  std::unique_ptr<ByteBpe> bpe(
      new ByteBpe(std::move(tokens), bos, eos, settings.add_bos, vocab_path));
  bpe->vocab_json_ = std::move(vocab_json);
  bpe->read_merges(merges_path);
  return bpe;
}

void ByteBpe::read_merges(const std::string& path) {
  merges_txt_ = read_file(path, "BPE merges");
  std::unordered_map<std::string, int32_t> ids;
  for (size_t i = 0; i < tokens_.size(); ++i) ids.emplace(tokens_[i], int32_t(i));
  auto id_of = [&](const std::string& token, size_t line) {
    auto it = ids.find(token);
    if (it == ids.end())
      throw std::runtime_error(path + ":" + std::to_string(line) + ": \"" + token +
                               "\" is not in vocab.json");
    return it->second;
  };
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
    std::string a(text.substr(0, space)), b(text.substr(space + 1));
    // A merge listed twice keeps its last rank, as encoder.py's dict does.
    Merge merge{id_of(a, line), id_of(b, line), id_of(a + b, line)};
    ranks_[pair_key(merge.first, merge.second)] = int32_t(merges_.size());
    merges_.push_back(merge);
  }
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
  gpt2_pretokenize(text, words);
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
  split_on_specials(
      text, [&](std::string_view plain) { encode_plain(plain, ids); },
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
  write_file_atomic((dir / "vocab.json").string(), vocab_json_);
  write_file_atomic((dir / "merges.txt").string(), merges_txt_);
  write_settings(model_dir);
}

}  // namespace qkv::data
