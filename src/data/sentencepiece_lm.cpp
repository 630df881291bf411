#include "data/sentencepiece_lm.h"

#include <sentencepiece_processor.h>

#include <filesystem>
#include <stdexcept>

#include "data/tokenizer.h"
#include "io/atomic_file.h"

namespace qkv::data {
namespace {

constexpr const char* kModelFile = "spm.model";

// The byte of a byte-fallback piece "<0xAB>".
char byte_of(const std::string& piece) {
  return char(std::stoi(piece.substr(3, 2), nullptr, 16));
}

}  // namespace

SentencePieceLm::SentencePieceLm(std::string serialized, int32_t bos_id, int32_t eos_id,
                                 bool add_bos,
                                 std::unique_ptr<sentencepiece::SentencePieceProcessor> processor)
    : LmTokenizer(bos_id, eos_id, add_bos),
      serialized_(std::move(serialized)),
      processor_(std::move(processor)) {}

SentencePieceLm::~SentencePieceLm() = default;

std::unique_ptr<SentencePieceLm> SentencePieceLm::train(const std::vector<std::string>& documents,
                                                        const LmTokenizerOptions& options) {
  std::vector<std::string_view> lines;
  for (const auto& document : documents) {
    std::string_view rest = document;
    while (!rest.empty()) {
      size_t end = rest.find('\n');
      std::string_view line = rest.substr(0, end);
      if (!line.empty()) lines.push_back(line);
      rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
    }
  }
  TokenizerOptions spm;
  spm.vocab_size = options.vocab_size;
  spm.model_type = "bpe";
  spm.character_coverage = options.character_coverage;
  spm.seed = options.seed;
  spm.max_sentences = options.max_sentences;
  spm.threads = options.threads;
  spm.byte_fallback = true;
  spm.normalization = "identity";
  spm.remove_extra_whitespaces = false;
  std::string serialized = train_sentencepiece_model(lines, spm, SpecialIds{-1, 0, 1, 2});
  auto processor = load_sentencepiece(serialized, "trained model");
  int32_t bos = processor->bos_id(), eos = processor->eos_id();
  return std::unique_ptr<SentencePieceLm>(
      new SentencePieceLm(std::move(serialized), bos, eos, true, std::move(processor)));
}

std::unique_ptr<SentencePieceLm> SentencePieceLm::load(const std::string& model_dir,
                                                       const Settings& settings) {
  std::filesystem::path dir(model_dir);
  std::string path = (dir / kModelFile).string();
  std::string serialized = read_file(path, "SentencePiece model");
  auto processor = load_sentencepiece(serialized, path);
  auto find_special = [&](const std::string& token, const char* what) {
    if (token.empty()) return -1;
    int32_t id = processor->PieceToId(token);
    if (processor->IdToPiece(id) != token)
      throw std::runtime_error((dir / "tokenizer.yaml").string() + ": the " + what + " \"" + token +
                               "\" is not a piece of " + path);
    return id;
  };
  int32_t bos = find_special(settings.bos_token, "bos-token");
  int32_t eos = find_special(settings.eos_token, "eos-token");
  return std::unique_ptr<SentencePieceLm>(
      new SentencePieceLm(std::move(serialized), bos, eos, settings.add_bos, std::move(processor)));
}

int32_t SentencePieceLm::vocab_size() const {
  return processor_->GetPieceSize();
}

std::vector<int32_t> SentencePieceLm::encode(std::string_view text) const {
  check_utf8(text);
  std::vector<int> ids;
  auto status = processor_->Encode(text, &ids);
  if (!status.ok()) throw std::runtime_error("SentencePiece encode failed: " + status.ToString());
  return std::vector<int32_t>(ids.begin(), ids.end());
}

std::string SentencePieceLm::decode_bytes(const std::vector<int32_t>& ids) const {
  for (int32_t id : ids) check_id(id);
  auto decoded = processor_->DecodeIdsAsImmutableProto(std::vector<int>(ids.begin(), ids.end()));
  std::string bytes;
  for (const auto& p : decoded.pieces()) {
    if (is_special(int32_t(p.id()))) continue;
    bytes += processor_->IsByte(int(p.id())) ? std::string(1, byte_of(p.piece())) : p.surface();
  }
  return bytes;
}

std::string SentencePieceLm::piece(int32_t id) const {
  check_id(id);
  return processor_->IdToPiece(id);
}

void SentencePieceLm::save(const std::string& model_dir) const {
  std::filesystem::create_directories(model_dir);
  write_file_atomic((std::filesystem::path(model_dir) / kModelFile).string(), serialized_);
  write_settings(model_dir);
}

}  // namespace qkv::data
