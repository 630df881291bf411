#include "data/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
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

}  // namespace

Tokenizer::Tokenizer(std::string serialized, const std::string& origin)
    : serialized_(std::move(serialized)),
      processor_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  auto status = processor_->LoadFromSerializedProto(serialized_);
  if (!status.ok())
    throw std::runtime_error(origin + ": not a SentencePiece model: " + status.ToString());
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

Tokenizer Tokenizer::train(const std::vector<std::string_view>& sentences,
                           const TokenizerOptions& options) {
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
      {"pad_id", std::to_string(pad_id)},
      {"unk_id", std::to_string(unk_id)},
      {"bos_id", std::to_string(bos_id)},
      {"eos_id", std::to_string(eos_id)},
      {"input_sentence_size", "0"},  // use every sentence given (sampling happened above)
      {"shuffle_input_sentence", "false"},
      {"num_threads", std::to_string(std::max(1, options.threads))},
      {"minloglevel", options.verbose ? "0" : "2"},
  };
  SentenceList input(chosen);
  std::string serialized;
  auto status = sentencepiece::SentencePieceTrainer::Train(args, &input, &serialized);
  if (!status.ok()) throw std::runtime_error("SentencePiece training failed: " + status.ToString());
  return Tokenizer(std::move(serialized), "trained model");
}

Tokenizer Tokenizer::train_joint(const ParallelCorpus& corpus, const TokenizerOptions& options) {
  std::vector<std::string_view> sentences;
  sentences.reserve(corpus.src.size() + corpus.tgt.size());
  for (auto& s : corpus.src) sentences.push_back(s);
  for (auto& s : corpus.tgt) sentences.push_back(s);
  return train(sentences, options);
}

Tokenizer Tokenizer::load(const std::string& model_path) {
  std::ifstream in(model_path, std::ios::binary);
  if (!in) throw std::runtime_error(model_path + ": cannot open SentencePiece model");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return Tokenizer(bytes.str(), model_path);
}

std::string Tokenizer::save(const std::string& model_dir) const {
  std::filesystem::create_directories(model_dir);
  std::string path = (std::filesystem::path(model_dir) / "spm.model").string();
  write_file_atomic(path, serialized_);
  return path;
}

int32_t Tokenizer::vocab_size() const {
  return processor_->GetPieceSize();
}

void Tokenizer::check_id(int32_t id) const {
  if (id < 0 || id >= vocab_size())
    throw std::invalid_argument("token id " + std::to_string(id) + " outside the vocabulary [0, " +
                                std::to_string(vocab_size()) + ")");
}

std::string Tokenizer::piece(int32_t id) const {
  check_id(id);
  return processor_->IdToPiece(id);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int> ids;
  auto status = processor_->Encode(text, &ids);
  if (!status.ok()) throw std::runtime_error("SentencePiece encode failed: " + status.ToString());
  return {ids.begin(), ids.end()};
}

std::vector<std::vector<int32_t>> Tokenizer::encode_all(
    const std::vector<std::string>& texts) const {
  std::vector<std::vector<int32_t>> out(texts.size());
  std::vector<int> failed(texts.size(), 0);  // exceptions must not leave the parallel loop
#pragma omp parallel for schedule(dynamic, 256)
  for (int64_t i = 0; i < int64_t(texts.size()); ++i) {
    std::vector<int> ids;
    failed[i] = !processor_->Encode(texts[i], &ids).ok();
    out[i].assign(ids.begin(), ids.end());
  }
  for (size_t i = 0; i < texts.size(); ++i)
    if (failed[i]) out[i] = encode(texts[i]);  // throws with SentencePiece's message
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  for (int32_t id : ids) check_id(id);
  std::string text;
  auto status = processor_->Decode(std::vector<int>(ids.begin(), ids.end()), &text);
  if (!status.ok()) throw std::runtime_error("SentencePiece decode failed: " + status.ToString());
  return text;
}

}  // namespace qkv::data
