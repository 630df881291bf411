#include "convert/hf_causal_lm.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <optional>

#include "data/byte_bpe.h"
#include "data/tokenizer_json.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"

namespace qkv::convert {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

namespace {

const char* kEndOfText = "<|endoftext|>";  // GPT-2's one special token

// Copies hf_dir/from to qkv_dir/to byte for byte; std::runtime_error naming a missing file.
void copy_tokenizer_file(const std::string& from_dir, const std::string& from,
                         const std::string& to_dir, const std::string& to,
                         const std::string& what) {
  std::string bytes = read_file((fs::path(from_dir) / from).string(), what);
  write_file_atomic((fs::path(to_dir) / to).string(), bytes);
}

// A special token of tokenizer_config.json: a string, {"content": "..."}, or null ("": none);
// `fallback` when the file or the key is absent.
std::string special_token(const std::optional<JsonFile>& config, const std::string& key,
                          const std::string& fallback) {
  if (!config || !config->json().contains(key)) return fallback;
  const nlohmann::json& v = config->json()[key];
  if (v.is_null()) return "";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  throw std::runtime_error(config->path() + ": \"" + key +
                           "\" must be a string or {\"content\": \"...\"}, not " + v.dump());
}

// Which tokenizer files hf_dir holds: "vocab.json" (with merges.txt), "tokenizer.model" or
// "tokenizer.json". The architecture's own (`preferred`: byte-bpe for GPT-2, sentencepiece for
// Llama) first, then the other's (a qkv model exported with the other kind), then tokenizer.json
// (Llama 3's only file); with none, the architecture's, whose absence the copy reports.
std::string tokenizer_files_in(const std::string& hf_dir, const std::string& preferred) {
  bool bpe = fs::exists(hf_dir + "/vocab.json") || fs::exists(hf_dir + "/merges.txt");
  bool spm = fs::exists(hf_dir + "/tokenizer.model");
  bool json = fs::exists(hf_dir + "/tokenizer.json");
  std::vector<std::pair<bool, const char*>> order = {{bpe, "vocab.json"}, {spm, "tokenizer.model"}};
  if (preferred == "sentencepiece") std::swap(order[0], order[1]);
  order.emplace_back(json, "tokenizer.json");
  for (const auto& [present, files] : order)
    if (present) return files;
  return order[0].second;
}

// Writes tokenizer.yaml and the tokenizer's files into qkv_dir; returns the tokenizer read back.
std::unique_ptr<data::LmTokenizer> tokenizer_from_hf(const std::string& hf_dir,
                                                     const std::string& preferred,
                                                     const std::string& qkv_dir,
                                                     std::vector<std::string>& notes) {
  auto tc = JsonFile::read_if_exists(hf_dir + "/tokenizer_config.json");
  std::string files = tokenizer_files_in(hf_dir, preferred), type = "byte-bpe", bos, eos;
  bool add_bos = false;
  if (files == "vocab.json") {
    const char* what = "tokenizer file (GPT-2's tokenizer is vocab.json and merges.txt)";
    copy_tokenizer_file(hf_dir, "vocab.json", qkv_dir, "vocab.json", what);
    copy_tokenizer_file(hf_dir, "merges.txt", qkv_dir, "merges.txt", what);
    bool has_end = JsonFile::read(hf_dir + "/vocab.json").json().contains(kEndOfText);
    bos = special_token(tc, "bos_token", has_end ? kEndOfText : "");
    eos = special_token(tc, "eos_token", has_end ? kEndOfText : "");
  } else if (files == "tokenizer.json") {  // its post-processor says whether bos comes first
    std::string path = hf_dir + "/tokenizer.json";
    std::string bos_first =
        data::parse_tokenizer_json(read_file(path, "tokenizer"), path).bos_token;
    copy_tokenizer_file(hf_dir, "tokenizer.json", qkv_dir, "tokenizer.json", "tokenizer file");
    add_bos = !bos_first.empty();
    bos = special_token(tc, "bos_token", bos_first);
    eos = special_token(tc, "eos_token", "");
  } else {
    type = "sentencepiece";
    copy_tokenizer_file(hf_dir, "tokenizer.model", qkv_dir, "spm.model",
                        "tokenizer file (a SentencePiece model, as Llama 1 and 2 have; Llama 3's "
                        "tokenizer.json converts too)");
    add_bos = true;
    bos = special_token(tc, "bos_token", "<s>");
    eos = special_token(tc, "eos_token", "</s>");
  }
  if (tc) add_bos = tc->get<bool>("add_bos_token", add_bos);
  if (tc && tc->get<bool>("add_eos_token", false))
    notes.push_back(tc->path() +
                    ": add_eos_token true is ignored: qkv adds no eos to the text it encodes");
  if (tc && tc->get<bool>("add_prefix_space", false))
    notes.push_back(tc->path() +
                    ": add_prefix_space true is ignored: qkv encodes the text as it is given");

  YAML::Emitter out;  // tokenizer.yaml, as data::LmTokenizer writes it
  out << YAML::BeginMap;
  out << YAML::Key << "type" << YAML::Value << type;
  out << YAML::Key << "add-bos" << YAML::Value << add_bos;
  out << YAML::Key << "bos-token" << YAML::Value << YAML::DoubleQuoted << bos;
  out << YAML::Key << "eos-token" << YAML::Value << YAML::DoubleQuoted << eos;
  out << YAML::EndMap;
  write_file_atomic(qkv_dir + "/tokenizer.yaml", std::string(out.c_str()) + "\n");
  try {
    return data::LmTokenizer::load_dir(qkv_dir);
  } catch (const std::runtime_error& e) {  // names the files written from hf_dir's
    throw std::runtime_error(hf_dir + ": its tokenizer does not convert: " + e.what());
  }
}

// The ids `file` gives under `key`: one id or a list of them; empty when it has none.
std::vector<int64_t> special_ids(const JsonFile& file, const std::string& key) {
  if (!file.has(key)) return {};
  const nlohmann::json& v = file.json()[key];
  std::vector<nlohmann::json> items = v.is_array() ? std::vector<nlohmann::json>(v.begin(), v.end())
                                                   : std::vector<nlohmann::json>{v};
  std::vector<int64_t> ids;
  for (const auto& item : items) {
    if (!item.is_number_integer())
      throw std::runtime_error(file.path() + ": \"" + key +
                               "\" must be a token id or a list of "
                               "them, not " +
                               v.dump());
    ids.push_back(item.get<int64_t>());
  }
  return ids;
}

// "7" for one id, else "[7,2]".
std::string ids_text(const std::vector<int64_t>& ids) {
  std::string list;
  for (int64_t id : ids) list += (list.empty() ? "" : ",") + std::to_string(id);
  return ids.size() == 1 ? list : "[" + list + "]";
}

std::string piece_text(const data::LmTokenizer& tok, int32_t id) {
  return std::to_string(id) + " (" + (id >= 0 ? "\"" + tok.piece(id) + "\"" : "none") + ")";
}

// config.json's bos_token_id against the tokenizer's: a note when they differ.
void compare_bos_id(const JsonFile& cfg, const data::LmTokenizer& tok,
                    std::vector<std::string>& notes) {
  std::vector<int64_t> ids = special_ids(cfg, "bos_token_id");
  if (ids.empty() || ids == std::vector<int64_t>{tok.bos_id()}) return;
  notes.push_back(cfg.path() + ": bos_token_id " + ids_text(ids) + " is not the tokenizer's " +
                  piece_text(tok, tok.bos_id()) + ": qkv uses the tokenizer's");
}

// The ids that end generation besides the tokenizer's eos: those transformers' generate stops
// at (generation_config.json's eos_token_id where it has one, else config.json's), less eos and
// ids outside the model's `vocab`, which it never generates. A note when they leave out the
// tokenizer's eos, at which qkv stops as well, or hold ids outside the vocabulary.
std::vector<int32_t> stop_ids_from_hf(const std::string& hf_dir, const JsonFile& cfg,
                                      const data::LmTokenizer& tok, int64_t vocab,
                                      std::vector<std::string>& notes) {
  auto generation = JsonFile::read_if_exists(hf_dir + "/generation_config.json");
  const JsonFile& source = generation && generation->has("eos_token_id") ? *generation : cfg;
  std::vector<int64_t> ends = special_ids(source, "eos_token_id");
  std::string where = source.path() + ": eos_token_id " + ids_text(ends);
  if (tok.eos_id() >= 0 && !ends.empty() &&
      std::find(ends.begin(), ends.end(), tok.eos_id()) == ends.end())
    notes.push_back(where + " leaves out the tokenizer's " + piece_text(tok, tok.eos_id()) +
                    ": qkv stops there too");
  std::vector<int32_t> stops;
  for (int64_t id : ends) {
    if (id < 0 || id >= vocab) {
      notes.push_back(where + " holds " + std::to_string(id) + ", outside the vocabulary of " +
                      std::to_string(vocab) + ": never generated, left out");
    } else if (id != tok.eos_id() && std::find(stops.begin(), stops.end(), id) == stops.end()) {
      stops.push_back(int32_t(id));
    }
  }
  return stops;
}

// The tokenizer files of qkv_dir in hf_dir, with tokenizer_config.json and
// special_tokens_map.json.
void tokenizer_to_hf(const std::string& qkv_dir, const data::LmTokenizer& tok,
                     const std::string& hf_dir, int64_t max_length) {
  auto piece = [&](int32_t id) { return id >= 0 ? ordered_json(tok.piece(id)) : ordered_json(); };
  ordered_json specials = {{"bos_token", piece(tok.bos_id())}, {"eos_token", piece(tok.eos_id())}};
  ordered_json config;
  const char* what = "tokenizer file";
  if (data::ByteBpe::has_tokenizer_json(qkv_dir)) {  // bos, if any, is its post-processor's
    copy_tokenizer_file(qkv_dir, "tokenizer.json", hf_dir, "tokenizer.json", what);
    config = {{"tokenizer_class", "PreTrainedTokenizerFast"}};
  } else if (tok.type() == "byte-bpe") {
    copy_tokenizer_file(qkv_dir, "vocab.json", hf_dir, "vocab.json", what);
    copy_tokenizer_file(qkv_dir, "merges.txt", hf_dir, "merges.txt", what);
    specials["unk_token"] = specials["eos_token"];  // GPT-2's: <|endoftext|> for everything
    config = {{"tokenizer_class", "GPT2Tokenizer"}, {"add_bos_token", tok.add_bos()}};
  } else {
    copy_tokenizer_file(qkv_dir, "spm.model", hf_dir, "tokenizer.model", what);
    config = {{"tokenizer_class", "LlamaTokenizer"},
              {"add_bos_token", tok.add_bos()},
              {"add_eos_token", false}};
  }
  config.update(specials);
  config["model_max_length"] = max_length;
  write_json(hf_dir + "/tokenizer_config.json", config);
  write_json(hf_dir + "/special_tokens_map.json", specials);
}

// Removes what a failed conversion wrote into qkv_dir (which was new, or empty).
void discard_output(const std::string& qkv_dir, bool existed) {
  std::error_code ec;
  if (!existed) {
    fs::remove_all(qkv_dir, ec);
    return;
  }
  for (const auto& entry : fs::directory_iterator(qkv_dir, ec)) fs::remove_all(entry.path(), ec);
}

}  // namespace

std::vector<std::string> lm_from_hf(const std::string& hf_dir, const JsonFile& cfg, nn::GptConfig c,
                                    const std::string& tokenizer_type, const WeightsFromHf& weights,
                                    const std::string& qkv_dir, std::vector<std::string> notes) {
  bool existed = fs::exists(qkv_dir);
  try {
    fs::create_directories(qkv_dir);
    auto tok = tokenizer_from_hf(hf_dir, tokenizer_type, qkv_dir, notes);
    if (tok->vocab_size() > c.vocab_size)
      throw std::runtime_error(hf_dir + ": the tokenizer has " + std::to_string(tok->vocab_size()) +
                               " tokens, more than config.json's vocab_size " +
                               std::to_string(c.vocab_size));
    compare_bos_id(cfg, *tok, notes);
    c.bos_id = tok->bos_id(), c.eos_id = tok->eos_id();
    c.stop_ids = stop_ids_from_hf(hf_dir, cfg, *tok, c.vocab_size, notes);
    CheckpointTensors hf = CheckpointTensors::read_hf_folder(hf_dir);
    nn::Gpt model(c);
    nn::load_params(model.params(), weights(hf, model), hf.origin());
    hf.finish();
    model_dir::save_gpt_dir(qkv_dir, c, model.params());
  } catch (...) {
    discard_output(qkv_dir, existed);
    throw;
  }
  return notes;
}

void write_hf_lm_folder(const std::string& qkv_dir, const model_dir::LanguageModel& m,
                        const std::string& hf_dir, const nlohmann::ordered_json& config,
                        const NamedTensors& weights) {
  const data::LmTokenizer& tok = *m.tokenizer;
  if (tok.type() != "byte-bpe" && tok.type() != "sentencepiece")
    throw std::runtime_error(qkv_dir + ": Hugging Face has no tokenizer class for a " + tok.type() +
                             " tokenizer (byte-bpe and sentencepiece convert)");
  const nn::GptConfig& c = m.model->config();
  auto id = [](int32_t id) { return id >= 0 ? ordered_json(id) : ordered_json(); };
  fs::create_directories(hf_dir);
  write_json(hf_dir + "/config.json", config);
  write_json(hf_dir + "/generation_config.json",
             {{"bos_token_id", id(c.bos_id)}, {"eos_token_id", eos_token_ids(c)}});
  tokenizer_to_hf(qkv_dir, tok, hf_dir, c.context_length);
  save_safetensors(hf_dir + "/model.safetensors", weights, {{"format", "pt"}});
}

nlohmann::ordered_json eos_token_ids(const nn::GptConfig& c) {
  std::vector<int32_t> ids;
  if (c.eos_id >= 0) ids.push_back(c.eos_id);
  ids.insert(ids.end(), c.stop_ids.begin(), c.stop_ids.end());
  if (ids.empty()) return nullptr;
  return ids.size() == 1 ? ordered_json(ids[0]) : ordered_json(ids);
}

void require_option(const std::string& where, const std::string& architecture,
                    const std::string& option, const std::string& actual,
                    const std::vector<std::string>& allowed) {
  if (std::find(allowed.begin(), allowed.end(), actual) != allowed.end()) return;
  std::string wanted;
  for (const auto& a : allowed) wanted += (wanted.empty() ? "" : " or ") + a;
  throw std::runtime_error(where + ": " + architecture + " needs " + option + " " + wanted +
                           ", not " + actual);
}

double json_float(float value) {
  char text[32];
  auto [end, ec] = std::to_chars(text, text + sizeof text, value);
  *end = '\0';
  return std::strtod(text, nullptr);
}

}  // namespace qkv::convert
