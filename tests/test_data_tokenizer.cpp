// Data layer, part 2: the SentencePiece tokenizer trained on a sample of the bundled train
// split: fixed special ids, deterministic training, encode/decode round trip, save and load.
#include <gtest/gtest.h>
#include <sentencepiece_trainer.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "data/corpus.h"
#include "data/tokenizer.h"
#include "support/data_files.h"

namespace qkv::test {
namespace {

using namespace qkv::data;

std::string bundled(const std::string& split) {
  return std::string(QKV_SOURCE_DIR) + "/data/bible.es-en." + split + ".tsv.xz";
}

TokenizerOptions small_options(uint64_t seed) {
  TokenizerOptions options;
  options.vocab_size = 1500;
  options.max_sentences = 4000;  // of 57,724 sentences: keeps each training near a second
  options.seed = seed;
  return options;
}

class TokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    train_ = new ParallelCorpus(read_corpus(bundled("train")));
    dev_ = new ParallelCorpus(read_corpus(bundled("dev")));
    tokenizer_ = new Tokenizer(Tokenizer::train_joint(*train_, small_options(7)));
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    delete dev_;
    delete train_;
  }
  static ParallelCorpus *train_, *dev_;
  static Tokenizer* tokenizer_;
};
ParallelCorpus* TokenizerTest::train_ = nullptr;
ParallelCorpus* TokenizerTest::dev_ = nullptr;
Tokenizer* TokenizerTest::tokenizer_ = nullptr;

TEST_F(TokenizerTest, HasFixedSpecialIds) {
  const Tokenizer& tok = *tokenizer_;
  EXPECT_EQ(tok.vocab_size(), 1500);
  EXPECT_EQ(tok.piece(Tokenizer::pad_id), "<pad>");
  EXPECT_EQ(tok.piece(Tokenizer::unk_id), "<unk>");
  EXPECT_EQ(tok.piece(Tokenizer::bos_id), "<s>");
  EXPECT_EQ(tok.piece(Tokenizer::eos_id), "</s>");
  auto ids = tok.encode("Y dijo Dios: Sea la luz.");
  ASSERT_FALSE(ids.empty());
  for (int32_t id : ids) EXPECT_GT(id, Tokenizer::eos_id);  // plain text has no specials
  EXPECT_EQ(tok.encode("中")[1], Tokenizer::unk_id);  // a character never seen: "▁" then <unk>
}

TEST_F(TokenizerTest, RoundTripsTheDevSplit) {
  const Tokenizer& tok = *tokenizer_;
  auto src = tok.encode_all(dev_->src), tgt = tok.encode_all(dev_->tgt);
  // A character that the training sample lacks (a capital É, say) becomes <unk>; every other
  // sentence must come back exactly.
  auto has_unk = [](const std::vector<int32_t>& ids) {
    return std::find(ids.begin(), ids.end(), Tokenizer::unk_id) != ids.end();
  };
  int64_t with_unk = 0;
  for (int64_t i = 0; i < dev_->size(); ++i) {
    EXPECT_EQ(src[i], tok.encode(dev_->src[i]));
    with_unk += has_unk(src[i]) + has_unk(tgt[i]);
    if (!has_unk(src[i])) {
      EXPECT_EQ(tok.decode(src[i]), dev_->src[i]);
    }
    if (!has_unk(tgt[i])) {
      EXPECT_EQ(tok.decode(tgt[i]), dev_->tgt[i]);
    }
  }
  EXPECT_LT(with_unk, 10);  // of 2000 sentences
  // Specials decode to nothing, so decoder output with <s> ... </s> <pad> reads cleanly.
  std::vector<int32_t> framed = {Tokenizer::bos_id};
  framed.insert(framed.end(), src[0].begin(), src[0].end());
  framed.insert(framed.end(), {Tokenizer::eos_id, Tokenizer::pad_id, Tokenizer::pad_id});
  EXPECT_EQ(tok.decode(framed), dev_->src[0]);
}

TEST_F(TokenizerTest, TrainingIsDeterministicPerSeed) {
  Tokenizer again = Tokenizer::train_joint(*train_, small_options(7));
  EXPECT_EQ(again.serialized(), tokenizer_->serialized());
  for (int64_t i = 0; i < 50; ++i)
    EXPECT_EQ(again.encode(dev_->tgt[i]), tokenizer_->encode(dev_->tgt[i]));
  Tokenizer other = Tokenizer::train_joint(*train_, small_options(8));
  EXPECT_NE(other.serialized(), tokenizer_->serialized());  // another sample, another model
}

TEST_F(TokenizerTest, SavesAndLoads) {
  ScratchDir dir("tokenizer");
  tokenizer_->save(dir.file("model/sub"));
  Tokenizer loaded = Tokenizer::load(dir.file("model/sub/spm.model"));
  EXPECT_EQ(loaded.serialized(), tokenizer_->serialized());
  EXPECT_EQ(loaded.encode(dev_->src[3]), tokenizer_->encode(dev_->src[3]));
}

// A Marian-style tokenizer: the joint model cuts both sides, a vocabulary of its pieces in
// another order (</s> 0, <unk> 1, the pieces of a few sentences, <pad> last) gives the ids.
TEST_F(TokenizerTest, MappedVocabularyGivesItsIdsAndUnkForTheRest) {
  ScratchDir dir("tokenizer_mapped");
  std::string text = "Y dijo Dios: Sea la luz.";
  std::vector<int32_t> own = tokenizer_->encode(text);
  nlohmann::ordered_json vocab = {{"</s>", 0}, {"<unk>", 1}};
  for (size_t i = 1; i < own.size(); ++i)  // the first piece is left out: it becomes <unk>
    if (!vocab.contains(tokenizer_->piece(own[i])))
      vocab[tokenizer_->piece(own[i])] = int(vocab.size());
  vocab["<pad>"] = int(vocab.size());
  write_bytes(dir.file("source.spm"), tokenizer_->serialized());
  write_bytes(dir.file("target.spm"), tokenizer_->serialized());
  write_bytes(dir.file("vocab.json"), vocab.dump());
  Tokenizer mapped = Tokenizer::load_dir(dir.file(""));
  EXPECT_FALSE(mapped.joint());
  EXPECT_EQ(mapped.vocab_size(), int32_t(vocab.size()));
  EXPECT_EQ(mapped.specials().eos, 0);
  EXPECT_EQ(mapped.specials().unk, 1);
  EXPECT_EQ(mapped.specials().pad, int32_t(vocab.size()) - 1);
  std::vector<int32_t> ids = mapped.encode(text, Side::target);
  ASSERT_EQ(ids.size(), own.size());
  EXPECT_EQ(ids[0], 1);
  for (size_t i = 1; i < ids.size(); ++i)
    EXPECT_EQ(mapped.piece(ids[i]), tokenizer_->piece(own[i]));
  EXPECT_EQ(mapped.encode_all({text, "", text})[2], ids);
  // <unk>, </s> and <pad> are dropped, as Hugging Face's decode(skip_special_tokens=True) does.
  std::vector<int32_t> framed = ids;
  framed.insert(framed.end(), {0, mapped.specials().pad});
  EXPECT_EQ(mapped.decode(framed), tokenizer_->decode({own.begin() + 1, own.end()}));

  mapped.save(dir.file("copy"));
  Tokenizer again = Tokenizer::load_dir(dir.file("copy"));
  EXPECT_EQ(again.vocabulary(), mapped.vocabulary());
  EXPECT_EQ(again.encode(text), ids);

  vocab.erase("<pad>");
  write_bytes(dir.file("vocab.json"), vocab.dump());
  expect_error<std::runtime_error>([&] { Tokenizer::load_dir(dir.file("")); },
                                   {"vocab.json", "no <pad>"});
  write_bytes(dir.file("vocab.json"), R"({"</s>": 0, "<unk>": 0, "<pad>": 2})");
  expect_error<std::runtime_error>([&] { Tokenizer::load_dir(dir.file("")); },
                                   {"vocab.json", "id 0 appears twice"});
  write_bytes(dir.file("vocab.json"), "[1, 2]");
  expect_error<std::runtime_error>([&] { Tokenizer::load_dir(dir.file("")); },
                                   {"vocab.json", "expected a JSON object"});
  std::filesystem::remove(dir.file("target.spm"));
  expect_error<std::runtime_error>([&] { Tokenizer::load_dir(dir.file("")); }, {"no tokenizer"});
}

TEST_F(TokenizerTest, RejectsBadIdsAndFiles) {
  expect_error<std::invalid_argument>(
      [&] {
        tokenizer_->decode({5, 1500});
      },
      {"token id 1500", "[0, 1500)"});
  expect_error<std::invalid_argument>([&] { tokenizer_->decode({-1}); }, {"token id -1"});
  ScratchDir dir("tokenizer_bad");
  std::string missing = dir.file("missing.model");
  expect_error<std::runtime_error>([&] { Tokenizer::load(missing); }, {missing, "cannot open"});
  std::string garbage = write_bytes(dir.file("garbage.model"), "this is no model");
  expect_error<std::runtime_error>([&] { Tokenizer::load(garbage); },
                                   {garbage, "not a SentencePiece model"});
}

TEST(Tokenizer, RejectsModelsWithOtherSpecialIds) {
  // SentencePiece's defaults (unk=0, bos=1, eos=2, no pad) differ from qkv's fixed ids.
  ScratchDir dir("tokenizer_ids");
  std::string text;
  for (int i = 0; i < 200; ++i)
    text += "el principio de la palabra numero " + std::to_string(i) + "\n";
  std::string input = write_text(dir.file("text.txt"), text);
  auto status = sentencepiece::SentencePieceTrainer::Train(
      "--input=" + input + " --model_prefix=" + dir.file("m") + " --vocab_size=40 --minloglevel=2");
  ASSERT_TRUE(status.ok()) << status.ToString();
  expect_error<std::runtime_error>([&] { Tokenizer::load(dir.file("m.model")); },
                                   {"m.model", "pad id -1, expected 0"});
}

TEST(Tokenizer, TrainingErrorsAreReported) {
  expect_error<std::invalid_argument>([] { Tokenizer::train({}, TokenizerOptions{}); },
                                      {"no sentences"});
  std::vector<std::string_view> tiny = {"hola mundo", "adiós mundo"};
  expect_error<std::runtime_error>([&] { Tokenizer::train(tiny, TokenizerOptions{}); },
                                   {"SentencePiece training failed"});
}

}  // namespace
}  // namespace qkv::test
