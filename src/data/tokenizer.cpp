#include "data/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include "data/corpus.h"
#include "io/atomic_file.h"
#include "tensor/rng.h"

namespace qkv::data {
namespace {

// Hands the sentences to SentencePiece's trainer without a temporary file.
class SentenceList : public sentencepiece::SentenceIterator {
 public:
  explicit SentenceList(const std::vector<std::string_view>& sentences) : sentences_(sentences) {
    load();
  }
  bool done() const override { return index_ >= sentences_.size(); }
  void Next() override {
    ++index_;
    load();
  }
  const std::string& value() const override { return current_; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  void load() {
    if (!done()) current_.assign(sentences_[index_]);
  }
  const std::vector<std::string_view>& sentences_;
  size_t index_ = 0;
  std::string current_;
};

// `count` of the sentences chosen by a seeded partial Fisher-Yates shuffle, in corpus order.
std::vector<std::string_view> sample(const std::vector<std::string_view>& sentences, int64_t count,
                                     uint64_t seed) {
  std::vector<int64_t> order(sentences.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = int64_t(i);
  Rng rng(seed);
  for (int64_t i = 0; i < count; ++i)
    std::swap(order[i], order[i + int64_t(rng.below(order.size() - i))]);
  order.resize(count);
  std::sort(order.begin(), order.end());
  std::vector<std::string_view> chosen;
  for (int64_t i : order) chosen.push_back(sentences[i]);
  return chosen;
}

// vocab.json: {"piece": id, ...} with ids 0..n-1, each once -> id -> piece.
std::vector<std::string> read_vocabulary(const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(path, "vocabulary"));
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path + ": not valid JSON: " + e.what());
  }
  if (!j.is_object() || j.empty())
    throw std::runtime_error(path + ": expected a JSON object {\"piece\": id, ...}");
  std::vector<std::string> vocab(j.size());
  std::vector<bool> seen(j.size(), false);
  for (auto& [piece, id] : j.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= int64_t(j.size()))
      throw std::runtime_error(path + ": id of \"" + piece + "\" must be an integer in [0, " +
                               std::to_string(j.size()) + ")");
    size_t i = id.get<size_t>();
    if (seen[i]) throw std::runtime_error(path + ": id " + std::to_string(i) + " appears twice");
    seen[i] = true;
    vocab[i] = piece;
  }
  return vocab;
}

}  // namespace

std::unique_ptr<sentencepiece::SentencePieceProcessor> load_sentencepiece(
    const std::string& serialized, const std::string& origin) {
  auto p = std::make_unique<sentencepiece::SentencePieceProcessor>();
  auto status = p->LoadFromSerializedProto(serialized);
  if (!status.ok())
    throw std::runtime_error(origin + ": not a SentencePiece model: " + status.ToString());
  return p;
}

Tokenizer::Tokenizer(std::string serialized, const std::string& origin, bool check_specials)
    : serialized_(std::move(serialized)), processor_(load_sentencepiece(serialized_, origin)) {
  if (!check_specials) return;
  const std::pair<int32_t, const char*> specials[] = {
      {pad_id, "pad"}, {unk_id, "unk"}, {bos_id, "bos"}, {eos_id, "eos"}};
  int32_t actual[] = {processor_->pad_id(), processor_->unk_id(), processor_->bos_id(),
                      processor_->eos_id()};
  for (int k = 0; k < 4; ++k)
    if (actual[k] != specials[k].first)
      throw std::runtime_error(origin + ": SentencePiece model has " + specials[k].second + " id " +
                               std::to_string(actual[k]) + ", expected " +
                               std::to_string(specials[k].first));
}

Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

std::string train_sentencepiece_model(const std::vector<std::string_view>& sentences,
                                      const TokenizerOptions& options, const SpecialIds& ids) {
  if (sentences.empty()) throw std::invalid_argument("tokenizer training: no sentences");
  std::vector<std::string_view> chosen = sentences;
  if (options.max_sentences > 0 && options.max_sentences < int64_t(sentences.size()))
    chosen = sample(sentences, options.max_sentences, options.seed);
  std::ostringstream coverage;
  coverage << options.character_coverage;
  std::unordered_map<std::string, std::string> args = {
      {"model_type", options.model_type},
      {"vocab_size", std::to_string(options.vocab_size)},
      {"character_coverage", coverage.str()},
      {"pad_id", std::to_string(ids.pad)},
      {"unk_id", std::to_string(ids.unk)},
      {"bos_id", std::to_string(ids.bos)},
      {"eos_id", std::to_string(ids.eos)},
      {"input_sentence_size", "0"},  // use every sentence given (sampling happened above)
      {"shuffle_input_sentence", "false"},
      {"num_threads", std::to_string(std::max(1, options.threads))},
      {"minloglevel", options.verbose ? "0" : "2"},
  };
  // Only what differs from SentencePiece's defaults, so that a translation model's file stays
  // the same bytes as before these options existed.
  if (options.byte_fallback) args["byte_fallback"] = "true";
  if (options.normalization != "nmt_nfkc") args["normalization_rule_name"] = options.normalization;
  if (!options.remove_extra_whitespaces) args["remove_extra_whitespaces"] = "false";
  SentenceList input(chosen);
  std::string serialized;
  auto status = sentencepiece::SentencePieceTrainer::Train(args, &input, &serialized);
  if (!status.ok()) throw std::runtime_error("SentencePiece training failed: " + status.ToString());
  return serialized;
}

Tokenizer Tokenizer::train(const std::vector<std::string_view>& sentences,
                           const TokenizerOptions& options) {
  return Tokenizer(train_sentencepiece_model(sentences, options, SpecialIds{}), "trained model");
}

Tokenizer Tokenizer::train_joint(const ParallelCorpus& corpus, const TokenizerOptions& options) {
  std::vector<std::string_view> sentences;
  sentences.reserve(corpus.src.size() + corpus.tgt.size());
  for (auto& s : corpus.src) sentences.push_back(s);
  for (auto& s : corpus.tgt) sentences.push_back(s);
  return train(sentences, options);
}

Tokenizer Tokenizer::load(const std::string& model_path) {
  return Tokenizer(read_file(model_path, "SentencePiece model"), model_path);
}

Tokenizer Tokenizer::load_mapped(const std::string& source_spm, const std::string& target_spm,
                                 const std::string& vocab_json) {
  Tokenizer t(read_file(source_spm, "SentencePiece model"), source_spm, false);
  t.target_serialized_ = read_file(target_spm, "SentencePiece model");
  t.target_processor_ = load_sentencepiece(t.target_serialized_, target_spm);
  t.vocab_ = read_vocabulary(vocab_json);
  for (size_t i = 0; i < t.vocab_.size(); ++i) t.piece_ids_[t.vocab_[i]] = int32_t(i);
  auto id_of = [&](const char* piece) {
    auto it = t.piece_ids_.find(piece);
    if (it == t.piece_ids_.end())
      throw std::runtime_error(vocab_json + ": the vocabulary has no " + piece);
    return it->second;
  };
  t.specials_ = {id_of("<pad>"), id_of("<unk>"), -1, id_of("</s>")};
  return t;
}

Tokenizer Tokenizer::load_dir(const std::string& model_dir) {
  std::filesystem::path dir(model_dir);
  if (std::filesystem::exists(dir / "spm.model")) return load((dir / "spm.model").string());
  for (const char* name : {"source.spm", "target.spm", "vocab.json"})
    if (!std::filesystem::exists(dir / name))
      throw std::runtime_error(model_dir +
                               ": no tokenizer (spm.model, or source.spm, target.spm "
                               "and vocab.json)");
  return load_mapped((dir / "source.spm").string(), (dir / "target.spm").string(),
                     (dir / "vocab.json").string());
}

void Tokenizer::save(const std::string& model_dir) const {
  std::filesystem::create_directories(model_dir);
  std::filesystem::path dir(model_dir);
  if (joint()) {
    write_file_atomic((dir / "spm.model").string(), serialized_);
    return;
  }
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  for (size_t i = 0; i < vocab_.size(); ++i) vocab[vocab_[i]] = i;
  write_file_atomic((dir / "source.spm").string(), serialized_);
  write_file_atomic((dir / "target.spm").string(), target_serialized_);
  write_file_atomic((dir / "vocab.json").string(), vocab.dump(1) + "\n");
}

int32_t Tokenizer::vocab_size() const {
  return joint() ? processor_->GetPieceSize() : int32_t(vocab_.size());
}

const Tokenizer::Processor& Tokenizer::side(Side s) const {
  return s == Side::target && target_processor_ ? *target_processor_ : *processor_;
}

void Tokenizer::check_id(int32_t id) const {
  if (id < 0 || id >= vocab_size())
    throw std::invalid_argument("token id " + std::to_string(id) + " outside the vocabulary [0, " +
                                std::to_string(vocab_size()) + ")");
}

std::string Tokenizer::piece(int32_t id) const {
  check_id(id);
  return joint() ? processor_->IdToPiece(id) : vocab_[size_t(id)];
}

bool Tokenizer::try_encode(std::string_view text, Side s, std::vector<int32_t>& ids) const {
  ids.clear();
  if (joint()) {
    std::vector<int> raw;
    if (!processor_->Encode(text, &raw).ok()) return false;
    ids.assign(raw.begin(), raw.end());
    return true;
  }
  std::vector<std::string> pieces;
  if (!side(s).Encode(text, &pieces).ok()) return false;
  for (const auto& p : pieces) {
    auto it = piece_ids_.find(p);
    ids.push_back(it == piece_ids_.end() ? specials_.unk : it->second);
  }
  return true;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, Side s) const {
  std::vector<int32_t> ids;
  if (!try_encode(text, s, ids)) {
    std::vector<int> unused;
    auto status = side(s).Encode(text, &unused);
    throw std::runtime_error("SentencePiece encode failed: " + status.ToString());
  }
  return ids;
}

std::vector<std::vector<int32_t>> Tokenizer::encode_all(const std::vector<std::string>& texts,
                                                        Side s) const {
  std::vector<std::vector<int32_t>> out(texts.size());
  std::vector<int> failed(texts.size(), 0);  // exceptions must not leave the parallel loop
#pragma omp parallel for schedule(dynamic, 256)
  for (int64_t i = 0; i < int64_t(texts.size()); ++i) failed[i] = !try_encode(texts[i], s, out[i]);
  for (size_t i = 0; i < texts.size(); ++i)
    if (failed[i]) out[i] = encode(texts[i], s);  // throws with SentencePiece's message
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  for (int32_t id : ids) check_id(id);
  std::string text;
  sentencepiece::util::Status status;
  if (joint()) {
    status = processor_->Decode(std::vector<int>(ids.begin(), ids.end()), &text);
  } else {
    std::vector<std::string> pieces;
    for (int32_t id : ids)
      if (id != specials_.pad && id != specials_.eos && id != specials_.unk && id != specials_.bos)
        pieces.push_back(vocab_[size_t(id)]);
    status = side(Side::target).Decode(pieces, &text);
  }
  if (!status.ok()) throw std::runtime_error("SentencePiece decode failed: " + status.ToString());
  return text;
}

}  // namespace qkv::data
