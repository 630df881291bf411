#include "data/tokenizer_json.h"

#include <nlohmann/json.hpp>
#include <stdexcept>

namespace qkv::data {
namespace {

using nlohmann::json;

// The fields of one tokenizer.json, read with errors that name the file and the field.
class Reader {
 public:
  explicit Reader(const std::string& path) : path_(path) {}

  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    throw std::runtime_error(path_ + ": " + field + " " + what);
  }
  // A short rendering of a value for a message.
  static std::string show(const json& v) {
    std::string text = v.dump();
    return text.size() > 160 ? text.substr(0, 160) + "..." : text;
  }
  const json& object(const json& parent, const std::string& key, const std::string& field) const {
    if (!parent.contains(key) || !parent[key].is_object()) fail(field, "must be a JSON object");
    return parent[key];
  }
  bool flag(const json& obj, const char* key, bool fallback, const std::string& field) const {
    if (!obj.contains(key) || obj[key].is_null()) return fallback;
    if (!obj[key].is_boolean()) fail(field + "." + key, "must be true or false");
    return obj[key].get<bool>();
  }
  std::string text(const json& obj, const char* key, const std::string& field) const {
    if (!obj.contains(key) || obj[key].is_null()) return "";
    if (!obj[key].is_string()) fail(field + "." + key, "must be a string");
    return obj[key].get<std::string>();
  }
  std::string type(const json& obj, const std::string& field) const {
    return text(obj, "type", field);
  }

 private:
  std::string path_;
};

constexpr const char* kPretokenizers =
    "qkv's byte-level BPE takes ByteLevel (GPT-2's pattern) or Sequence [Split on Llama 3's "
    "pattern, Isolated; ByteLevel without its pattern], with add_prefix_space false";

Pretokenizer read_pretokenizer(const Reader& r, const json& root) {
  const char* field = "pre_tokenizer";
  if (!root.contains(field) || !root[field].is_object()) r.fail(field, kPretokenizers);
  const json& p = root[field];
  auto byte_level = [&](const json& b, bool use_regex, const std::string& where) {
    return r.type(b, where) == "ByteLevel" && !r.flag(b, "add_prefix_space", true, where) &&
           r.flag(b, "use_regex", true, where) == use_regex;
  };
  if (byte_level(p, true, field)) return Pretokenizer::gpt2;
  if (r.type(p, field) == "Sequence" && p.contains("pretokenizers") &&
      p["pretokenizers"].is_array() && p["pretokenizers"].size() == 2) {
    const json& split = p["pretokenizers"][0];
    std::string where = std::string(field) + ".pretokenizers[0]";
    bool isolated = r.type(split, where) == "Split" &&
                    r.text(split, "behavior", where) == "Isolated" &&
                    !r.flag(split, "invert", false, where) && split.contains("pattern") &&
                    split["pattern"].is_object();
    if (isolated &&
        byte_level(p["pretokenizers"][1], false, std::string(field) + ".pretokenizers[1]")) {
      std::string pattern = r.text(split["pattern"], "Regex", where + ".pattern");
      for (Pretokenizer kind : {Pretokenizer::gpt2, Pretokenizer::llama3})
        if (pattern == pretokenizer_pattern(kind)) return kind;
      r.fail(where + ".pattern", "\"" + pattern + "\" is neither GPT-2's nor Llama 3's pattern");
    }
  }
  r.fail(field, std::string(kPretokenizers) + ", not " + Reader::show(p));
}

// The model's vocabulary into tokens / in_model.
void read_vocab(const Reader& r, const json& model, TokenizerJson& t) {
  const json& vocab = r.object(model, "vocab", "model.vocab");
  for (auto& [token, id] : vocab.items()) {
    if (token.empty()) r.fail("model.vocab", "holds an empty token");
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (int64_t(1) << 24))
      r.fail("model.vocab", "id of \"" + token + "\" must be an integer in [0, 2^24)");
    size_t i = id.get<size_t>();
    if (i >= t.tokens.size()) t.tokens.resize(i + 1), t.in_model.resize(i + 1, false);
    if (t.in_model[i]) r.fail("model.vocab", "id " + std::to_string(i) + " appears twice");
    t.tokens[i] = token;
    t.in_model[i] = true;
  }
}

void read_merges(const Reader& r, const json& model, TokenizerJson& t) {
  if (!model.contains("merges") || !model["merges"].is_array())
    r.fail("model.merges", "must be a list of merges");
  for (const json& m : model["merges"]) {
    std::string where = "model.merges[" + std::to_string(t.merges.size()) + "]";
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      size_t space = s.find(' ');
      if (space == 0 || space == std::string::npos || space + 1 == s.size() ||
          s.find(' ', space + 1) != std::string::npos)
        r.fail(where, "must be two tokens separated by a space, not " + Reader::show(m));
      t.merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      t.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      r.fail(where, "must be \"a b\" or [\"a\", \"b\"], not " + Reader::show(m));
    }
  }
}

void read_model(const Reader& r, const json& root, TokenizerJson& t) {
  const json& model = r.object(root, "model", "model");
  if (r.type(model, "model") != "BPE")
    r.fail("model.type", "must be \"BPE\", not " + Reader::show(model.value("type", json())));
  if (model.contains("dropout") && !model["dropout"].is_null() &&
      !(model["dropout"].is_number() && model["dropout"].get<double>() == 0))
    r.fail("model.dropout", "must be null: qkv's BPE is deterministic");
  if (r.flag(model, "byte_fallback", false, "model"))
    r.fail("model.byte_fallback", "must be false: byte-level BPE has a token for every byte");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (!r.text(model, key, "model").empty())
      r.fail(std::string("model.") + key, "must be null in a byte-level BPE");
  t.ignore_merges = r.flag(model, "ignore_merges", false, "model");
  read_vocab(r, model, t);
  read_merges(r, model, t);
}

void read_added_tokens(const Reader& r, const json& root, TokenizerJson& t) {
  if (!root.contains("added_tokens") || root["added_tokens"].is_null()) return;
  if (!root["added_tokens"].is_array()) r.fail("added_tokens", "must be a list");
  for (const json& a : root["added_tokens"]) {
    std::string where = "added_tokens[" + std::to_string(t.added_tokens.size()) + "]";
    if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
        a["id"].get<int64_t>() < 0 || a["id"].get<int64_t>() >= (int64_t(1) << 24))
      r.fail(where, "must have an integer \"id\" in [0, 2^24)");
    std::string content = r.text(a, "content", where);
    if (content.empty()) r.fail(where + ".content", "must be a non-empty string");
    for (const char* key : {"lstrip", "rstrip", "single_word"})
      if (r.flag(a, key, false, where))
        r.fail(where + "." + key, "(\"" + content +
                                      "\") must be false: qkv splits an added "
                                      "token off the text as it stands");
    size_t id = a["id"].get<size_t>();
    if (id >= t.tokens.size()) t.tokens.resize(id + 1), t.in_model.resize(id + 1, false);
    if (!t.tokens[id].empty() && t.tokens[id] != content)
      r.fail(where, "\"" + content + "\" has id " + std::to_string(id) + ", which is \"" +
                        t.tokens[id] + "\"");
    t.tokens[id] = content;
    t.added_tokens.emplace_back(content, int32_t(id));
  }
}

// The special token the post-processor puts before the text ("": none).
std::string read_bos(const Reader& r, const json& p, const std::string& field) {
  if (p.is_null()) return "";
  std::string type = r.type(p, field);
  if (type == "ByteLevel") return "";
  if (type == "Sequence" && p.contains("processors") && p["processors"].is_array()) {
    std::string bos;
    for (size_t i = 0; i < p["processors"].size(); ++i) {
      std::string one =
          read_bos(r, p["processors"][i], field + ".processors[" + std::to_string(i) + "]");
      if (!one.empty() && !bos.empty()) r.fail(field, "adds two tokens before the text");
      if (!one.empty()) bos = one;
    }
    return bos;
  }
  const char* supported = "must add at most one special token before the text (qkv's add-bos), ";
  if (type != "TemplateProcessing" || !p.contains("single") || !p["single"].is_array())
    r.fail(field, supported + std::string("not ") + Reader::show(p));
  const json& single = p["single"];
  auto is_text = [](const json& piece) { return piece.is_object() && piece.contains("Sequence"); };
  if (single.size() == 1 && is_text(single[0])) return "";
  if (single.size() == 2 && is_text(single[1]) && single[0].is_object() &&
      single[0].contains("SpecialToken") && single[0]["SpecialToken"].is_object())
    return r.text(single[0]["SpecialToken"], "id", field + ".single[0].SpecialToken");
  r.fail(field + ".single", supported + std::string("not ") + Reader::show(single));
}

}  // namespace

TokenizerJson parse_tokenizer_json(const std::string& text, const std::string& path) {
  Reader r(path);
  json root;
  try {
    root = json::parse(text);
  } catch (const json::exception& e) {
    throw std::runtime_error(path + ": not valid JSON: " + e.what());
  }
  if (!root.is_object()) r.fail("the file", "must hold a JSON object");
  TokenizerJson t;
  read_model(r, root, t);
  if (root.contains("normalizer") && !root["normalizer"].is_null())
    r.fail("normalizer", "must be null: qkv encodes the text as it is given, not " +
                             Reader::show(root["normalizer"]));
  t.pretokenizer = read_pretokenizer(r, root);
  if (root.contains("decoder") && !root["decoder"].is_null() &&
      r.type(root["decoder"], "decoder") != "ByteLevel")
    r.fail("decoder", "must be ByteLevel, not " + Reader::show(root["decoder"]));
  read_added_tokens(r, root, t);
  for (size_t id = 0; id < t.tokens.size(); ++id)
    if (t.tokens[id].empty())
      r.fail("model.vocab", "has no token of id " + std::to_string(id) +
                                " (the ids of the vocabulary and the added tokens must be 0..n-1)");
  if (t.tokens.empty()) r.fail("model.vocab", "is empty");
  t.bos_token = read_bos(r, root.value("post_processor", json()), "post_processor");
  return t;
}

}  // namespace qkv::data
