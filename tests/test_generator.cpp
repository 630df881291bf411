// decode::Generator on a small random model with a chars tokenizer: greedy decoding equals the
// argmax of full forward passes over the growing sequence (also past the context, where the
// generator drops the older half); a sequence's text does not depend on its batch; streamed
// pieces add up to the text and never show part of a stop string; eos, the model's stop ids and
// max-new-tokens end sequences with their reason; long prompts lose their start.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "data/lm_tokenizer.h"
#include "decode/generator.h"
#include "nn/params.h"
#include "support/torch_ref.h"

namespace qkv::test {
namespace {

struct Fixture {
  std::unique_ptr<data::LmTokenizer> tok;
  nn::Gpt model;
};

Fixture make(const std::string& preset, int64_t context, uint64_t seed) {
  auto tok = data::LmTokenizer::train(
      "chars", {"In the beginning God created the heavens and the earth.", "xyz 0123!?"}, {});
  nn::GptConfig c = nn::GptConfig::preset(preset);
  c.vocab_size = tok->vocab_size(), c.eos_id = tok->eos_id(), c.bos_id = tok->bos_id();
  c.context_length = context, c.d_model = 32, c.layers = 2, c.heads = 4, c.d_ff = 64;
  if (c.kv_heads > 0) c.kv_heads = 2;
  nn::Gpt model(c);
  Rng rng(seed);
  model.init(rng);
  // Larger weights than GPT-2's initialisation, so that the logits differ clearly.
  for (auto& [name, v] : model.params())
    if (v.shape().size() == 2) Var(v).mutable_value().copy_from(randn(v.shape(), rng, 0.3f));
  return {std::move(tok), std::move(model)};
}

// Greedy tokens computed from scratch: each step runs the model on the last `window` tokens
// (the generator's view after its context shifts).
int32_t argmax_next(const nn::Gpt& model, const std::vector<int32_t>& seq, size_t window) {
  std::vector<int32_t> last(seq.end() - std::ptrdiff_t(std::min(window, seq.size())), seq.end());
  Tensor logits = model.forward(Tensor::from_vector(last, {1, int64_t(last.size())}), {}).value();
  std::vector<float> all = logits.to_vector();
  int64_t v = model.config().vocab_size;
  auto row = all.end() - v;
  return int32_t(std::max_element(row, all.end()) - row);
}

TEST(Generator, GreedyEqualsTheArgmaxOfFullForwardPasses) {
  for (const char* preset : {"gpt-nano", "llama-tiny"}) {
    Fixture f = make(preset, 64, 3);
    decode::GenerationOptions o;
    o.sampling.temperature = 0, o.max_new_tokens = 20;
    decode::Generator g(f.model, *f.tok, o);
    std::string prompt = "In the beginning";
    decode::Generation out = g.generate({prompt})[0];
    std::vector<int32_t> seq = f.tok->encode(prompt);
    for (int64_t i = 0; i < out.new_tokens; ++i) seq.push_back(argmax_next(f.model, seq, 64));
    std::vector<int32_t> generated(seq.end() - out.new_tokens, seq.end());
    EXPECT_EQ(out.text, f.tok->decode(generated)) << preset;
  }
}

TEST(Generator, PastTheContextTheOlderHalfIsDropped) {
  Fixture f = make("gpt-nano", 8, 5);
  decode::GenerationOptions o;
  o.sampling.temperature = 0, o.max_new_tokens = 30;
  decode::Generator g(f.model, *f.tok, o);
  decode::Generation out = g.generate({"God"})[0];
  ASSERT_EQ(out.finish_reason, "length");
  ASSERT_EQ(out.new_tokens, 30);
  // The cache holds 8 positions. A token is predicted from the tokens the cache holds; when it
  // is full, it keeps the 3 (8 / 2 - 1) before the newest token, then takes the newest.
  std::vector<int32_t> seq = f.tok->encode("God");
  size_t window = seq.size();
  for (int i = 0; i < 30; ++i) {
    seq.push_back(argmax_next(f.model, seq, window));
    window = window == 8 ? 4 : window + 1;
  }
  std::vector<int32_t> generated(seq.end() - 30, seq.end());
  EXPECT_EQ(out.text, f.tok->decode(generated));
}

TEST(Generator, ASequenceDoesNotDependOnItsBatch) {
  Fixture f = make("llama-tiny", 64, 7);
  decode::GenerationOptions o;
  o.sampling.temperature = 1.2f, o.sampling.top_k = 20, o.sampling.seed = 11;
  o.max_new_tokens = 16, o.num_samples = 3;
  std::vector<std::string> prompts = {"In", "the beginning God", "xyz"};
  o.batch_size = 16;
  auto together = decode::Generator(f.model, *f.tok, o).generate(prompts);
  o.batch_size = 1;
  auto alone = decode::Generator(f.model, *f.tok, o).generate(prompts);
  ASSERT_EQ(together.size(), 9u);
  for (size_t i = 0; i < together.size(); ++i) EXPECT_EQ(together[i].text, alone[i].text) << i;
  EXPECT_NE(together[0].text, together[1].text) << "two samples of a prompt are the same";
  o.sampling.seed = 12;
  auto reseeded = decode::Generator(f.model, *f.tok, o).generate(prompts);
  EXPECT_NE(reseeded[0].text, together[0].text);
}

TEST(Generator, SampleStreamsMakeABatchOfRequestsEqualEachAlone) {
  // A server batches requests with their own seeds: each prompt's samples must equal what a
  // generator with that seed gives the prompt alone.
  Fixture f = make("gpt-nano", 64, 7);
  decode::GenerationOptions o;
  o.sampling.temperature = 1.0f, o.max_new_tokens = 12, o.num_samples = 2;
  std::vector<std::string> prompts = {"In", "God", "xyz"};
  std::vector<uint64_t> seeds = {5, 6, 5};
  std::vector<decode::SampleStream> streams;
  for (uint64_t seed : seeds) streams.push_back({seed, 0});
  auto batched = decode::Generator(f.model, *f.tok, o).generate(prompts, {}, streams);
  ASSERT_EQ(batched.size(), 6u);
  for (size_t p = 0; p < prompts.size(); ++p) {
    o.sampling.seed = seeds[p];
    auto alone = decode::Generator(f.model, *f.tok, o).generate({prompts[p]});
    for (size_t j = 0; j < 2; ++j) EXPECT_EQ(batched[p * 2 + j].text, alone[j].text) << p << j;
  }
  EXPECT_THROW(decode::Generator(f.model, *f.tok, o).generate(prompts, {}, {{1, 0}}),
               std::invalid_argument);
}

TEST(Generator, StreamedPiecesAddUpAndStopBeforeTheStopString) {
  Fixture f = make("gpt-nano", 64, 9);
  decode::GenerationOptions o;
  o.sampling.temperature = 0, o.max_new_tokens = 40;
  std::string full = decode::Generator(f.model, *f.tok, o).generate({"God"})[0].text;
  ASSERT_GE(full.size(), 10u);
  std::string stop = full.substr(5, 3);  // occurs in the greedy text
  o.stop = {stop, "never appears 123"};
  std::map<size_t, std::string> streamed;
  decode::Generation out =
      decode::Generator(f.model, *f.tok, o)
          .generate({"God"}, [&](size_t i, const std::string& piece) { streamed[i] += piece; })[0];
  EXPECT_EQ(out.finish_reason, "stop");
  EXPECT_EQ(out.text, full.substr(0, full.find(stop)));
  EXPECT_EQ(streamed[0], out.text);
}

// A model's stop ids (a Hugging Face eos_token_id list) end a sequence as eos does, before the
// token, with finish reason "eos".
TEST(Generator, AStopIdEndsASequenceAsEosDoes) {
  Fixture f = make("llama-tiny", 64, 9);
  decode::GenerationOptions o;
  o.sampling.temperature = 0, o.max_new_tokens = 20;
  std::vector<int32_t> seq = f.tok->encode("God");
  size_t prompt = seq.size();
  for (int i = 0; i < 20; ++i) seq.push_back(argmax_next(f.model, seq, 64));
  std::vector<int32_t> generated(seq.begin() + std::ptrdiff_t(prompt), seq.end());
  ASSERT_EQ(decode::Generator(f.model, *f.tok, o).generate({"God"})[0].text,
            f.tok->decode(generated));
  int32_t stop = generated[6];
  auto first = std::find(generated.begin(), generated.end(), stop);
  ASSERT_GT(first - generated.begin(), 0) << "the first token is the stop id";

  nn::GptConfig c = f.model.config();
  int32_t unseen = f.tok->vocab_size() - 1;
  while (std::find(generated.begin(), generated.end(), unseen) != generated.end()) --unseen;
  c.stop_ids = {unseen, stop};
  nn::Gpt stopping(c);
  nn::load_params(stopping.params(), nn::param_tensors(f.model.params()), "the fixture");
  decode::Generation out = decode::Generator(stopping, *f.tok, o).generate({"God"})[0];
  EXPECT_EQ(out.finish_reason, "eos");
  EXPECT_EQ(out.new_tokens, first - generated.begin());
  EXPECT_EQ(out.text, f.tok->decode(std::vector<int32_t>(generated.begin(), first)));
}

TEST(Generator, LongPromptsLoseTheirStartAndOptionsAreChecked) {
  Fixture f = make("gpt-nano", 16, 2);
  decode::GenerationOptions o;
  o.sampling.temperature = 0, o.max_new_tokens = 3;
  decode::Generation out =
      decode::Generator(f.model, *f.tok, o).generate({"In the beginning God created"})[0];
  EXPECT_TRUE(out.prompt_cut);
  EXPECT_EQ(out.prompt_tokens, 15);
  EXPECT_THROW(decode::Generator(f.model, *f.tok, o).generate({"\xff"}), std::invalid_argument);
  o.max_new_tokens = 0;
  EXPECT_THROW(decode::Generator(f.model, *f.tok, o), std::invalid_argument);
  o.max_new_tokens = 3, o.sampling.top_p = 0;
  EXPECT_THROW(decode::Generator(f.model, *f.tok, o), std::invalid_argument);
}

}  // namespace
}  // namespace qkv::test
