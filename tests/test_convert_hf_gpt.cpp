// qkv convert for Hugging Face GPT2LMHeadModel and LlamaForCausalLM folders: random models in
// Hugging Face's layout (tests/python/hf_gpt_fixtures.py: model.safetensors, pytorch_model.bin or
// two shards) converted to qkv give the logits of float64 references written from the published
// definitions (relative 1e-4) and their greedy continuations (token for token); the KV-cache
// steps give the full forward's logits (1e-4), rows of different lengths included; written back
// as Hugging Face folders they give the same logits there and read back bit-identical. Refusals,
// conversion notes and missing files: test_convert_hf_gpt_folder.cpp.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "convert/hf_gpt2.h"
#include "convert/hf_llama.h"
#include "data/corpus.h"
#include "data/lm_tokenizer.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "model_dir/gpt_dir.h"
#include "support/data_files.h"
#include "support/hf_gpt_folders.h"
#include "support/python_script.h"
#include "support/torch_ref.h"

namespace qkv::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::map<std::string, Tensor> read_tensors(const std::string& path) {
  std::map<std::string, Tensor> out;
  for (auto& [name, t] : load_safetensors(path)) out[name] = t;
  return out;
}

// What the reference computes on the Hugging Face folder hf for `io`'s ids and prompts.
std::map<std::string, Tensor> reference(const std::string& hf, std::map<std::string, Tensor> io) {
  std::string path = hf + ".io.safetensors";
  save_safetensors(path, NamedTensors(io.begin(), io.end()));
  run_python_script("hf_gpt_fixtures.py", "run " + hf + " " + path);
  return read_tensors(path);
}

// Rows [first, first + n) of the i32 matrix t, each cut to `len` columns.
Tensor rows(const Tensor& t, int64_t first, int64_t n, int64_t len) {
  std::vector<int32_t> out;
  for (int64_t r = first; r < first + n; ++r)
    for (int64_t j = 0; j < len; ++j) out.push_back(t.data<int32_t>()[r * t.size(1) + j]);
  return Tensor::from_vector(out, {n, len});
}

// logits [B, L, V] at (row, position) -> [V].
Tensor logits_at(const Tensor& logits, int64_t row, int64_t pos) {
  int64_t len = logits.size(1), v = logits.size(2);
  return logits.reshape({logits.size(0) * len, v})
      .slice_rows(row * len + pos, row * len + pos + 1)
      .reshape({v});
}

std::vector<int32_t> argmax_rows(const Tensor& logits) {  // [B, V] -> B ids
  std::vector<int32_t> out;
  int64_t v = logits.size(1);
  for (int64_t r = 0; r < logits.size(0); ++r) {
    const float* row = logits.data<float>() + r * v;
    out.push_back(int32_t(std::max_element(row, row + v) - row));
  }
  return out;
}

// Greedy continuations of `steps` tokens through the KV cache: the prompts (rows of prompts,
// the first lengths[r] real) prefilled together, then one token per row and step.
std::vector<std::vector<int32_t>> greedy(const nn::Gpt& model, const Tensor& prompts,
                                         const std::vector<int64_t>& lengths, int64_t steps) {
  int64_t n = prompts.size(0);
  nn::PackedGpt packed = model.pack();
  nn::KvCache cache = model.new_cache(n, prompts.size(1) + steps);
  Tensor logits = model.step(prompts, lengths, cache, packed);
  std::vector<std::vector<int32_t>> out(static_cast<size_t>(n));
  for (int64_t s = 0; s < steps; ++s) {
    std::vector<int32_t> next = argmax_rows(logits);
    for (size_t r = 0; r < next.size(); ++r) out[r].push_back(next[r]);
    if (s + 1 < steps)
      logits = model.step(Tensor::from_vector(next, {n, 1}), std::vector<int64_t>(size_t(n), 1),
                          cache, packed);
  }
  return out;
}

// The KV-cache path against the full forward of ids [B, L]: row 0 prefilled with 5 tokens then
// stepped one token at a time; rows 1 and 2 together, prefilled with 6 and 3 tokens (padded),
// then stepped 4 times each at their own positions.
void expect_cache_matches_forward(const nn::Gpt& model, const Tensor& ids) {
  Tensor full = model.forward(ids, nn::Context{}).value();  // [B, L, V]
  int64_t len = ids.size(1);
  nn::PackedGpt packed = model.pack();
  nn::KvCache one = model.new_cache(1, len);
  Tensor got = model.step(rows(ids, 0, 1, 5), {5}, one, packed);
  expect_close(got.reshape({full.size(2)}), logits_at(full, 0, 4), 1e-4, "prefill of row 0");
  for (int64_t pos = 5; pos < len; ++pos) {
    Tensor token = Tensor::from_vector(std::vector<int32_t>{ids.data<int32_t>()[pos]}, {1, 1});
    got = model.step(token, {1}, one, packed);
    expect_close(got.reshape({full.size(2)}), logits_at(full, 0, pos), 1e-4,
                 "row 0, step at position " + std::to_string(pos));
  }
  std::vector<int64_t> at = {6, 3};
  nn::KvCache two = model.new_cache(2, len);
  Tensor prefill = rows(ids, 1, 2, 6);
  for (int64_t j = 3; j < 6; ++j) prefill.data<int32_t>()[6 + j] = 0;  // row 2's padding
  got = model.step(prefill, at, two, packed);
  for (int64_t s = 0; s <= 4; ++s) {
    for (int64_t r = 0; r < 2; ++r)
      expect_close(got.slice_rows(r, r + 1).reshape({full.size(2)}),
                   logits_at(full, 1 + r, at[size_t(r)] - 1), 1e-4,
                   "rows of different lengths: row " + std::to_string(1 + r) + " at position " +
                       std::to_string(at[size_t(r)] - 1));
    if (s == 4) break;
    std::vector<int32_t> next;
    for (int64_t r = 0; r < 2; ++r)
      next.push_back(ids.data<int32_t>()[(1 + r) * len + at[size_t(r)]]);
    got = model.step(Tensor::from_vector(next, {2, 1}), {1, 1}, two, packed);
    for (auto& a : at) ++a;
  }
}

// The converted model against the reference's outputs `want` (ids, logits, prompts, greedy).
void expect_reference_outputs(const nn::Gpt& model, std::map<std::string, Tensor> want) {
  expect_close(model.forward(want["ids"], nn::Context{}).value(), want["logits"], 1e-4, "logits");
  const Tensor& lengths = want["prompt_lengths"];
  std::vector<int64_t> lens;
  for (int64_t r = 0; r < lengths.numel(); ++r) lens.push_back(lengths.data<int32_t>()[r]);
  const Tensor& expected = want["greedy"];
  auto got = greedy(model, want["prompt_ids"], lens, expected.size(1));
  for (size_t r = 0; r < got.size(); ++r) {
    std::vector<int32_t> row(expected.data<int32_t>() + int64_t(r) * expected.size(1),
                             expected.data<int32_t>() + int64_t(r + 1) * expected.size(1));
    EXPECT_EQ(got[r], row) << "greedy continuation of prompt " << r;
  }
}

class HfGpt : public ::testing::TestWithParam<GptCase> {};

TEST_P(HfGpt, GivesTheReferenceOutputsAndRoundTripsBitIdentical) {
  const GptCase& c = GetParam();
  ScratchDir dir("hf_gpt_" + c.name);
  std::string hf = dir.file("hf"), qkv = dir.file("qkv"), back_hf = dir.file("back_hf"),
              back = dir.file("back");
  make_folder(hf, c, 11);
  EXPECT_EQ(from_hf(c.arch)(hf, qkv), std::vector<std::string>{});
  model_dir::LanguageModel m = model_dir::load_language_model_dir(qkv);
  const nn::GptConfig& cfg = m.model->config();
  if (c.arch == "gpt2") {
    EXPECT_EQ(m.tokenizer->type(), "byte-bpe");
    EXPECT_FALSE(m.tokenizer->add_bos());
    EXPECT_EQ(m.tokenizer->piece(cfg.eos_id), "<|endoftext|>");
    EXPECT_EQ(cfg.eos_id, cfg.vocab_size - 1);  // <|endoftext|> is the last of vocab.json
  } else if (c.spec.value("tokenizer", "") == "llama3") {  // tokenizer.json alone
    EXPECT_EQ(m.tokenizer->type(), "byte-bpe");
    EXPECT_TRUE(m.tokenizer->add_bos());
    EXPECT_EQ(m.tokenizer->piece(cfg.bos_id), "<|begin_of_text|>");
    EXPECT_EQ(m.tokenizer->piece(cfg.eos_id), "<|eot_id|>");
    EXPECT_EQ(m.tokenizer->vocab_size(), cfg.vocab_size);
    std::vector<std::string> texts = {"In the beginning God created the heaven and the earth.",
                                      "<|begin_of_text|>And God said, Let there be light:\n\n"
                                      "and there was light.<|eot_id|>"};
    write_bytes(dir.file("texts.json"), json(texts).dump());
    run_python_script("byte_bpe_reference.py",
                      "encode " + hf + " " + dir.file("texts.json") + " " + dir.file("ids.json"));
    json ids = json::parse(read_file(dir.file("ids.json")));
    for (size_t i = 0; i < texts.size(); ++i)
      EXPECT_EQ(m.tokenizer->encode(texts[i]), ids[i].get<std::vector<int32_t>>()) << texts[i];
  } else {
    EXPECT_EQ(m.tokenizer->type(), "sentencepiece");
    EXPECT_TRUE(m.tokenizer->add_bos());
    EXPECT_EQ(cfg.bos_id, 1);
    EXPECT_EQ(cfg.eos_id, 2);
  }
  EXPECT_EQ(cfg.bos_id, m.tokenizer->bos_id());
  expect_reference_outputs(*m.model, read_tensors(hf + "/expected.safetensors"));
  expect_cache_matches_forward(*m.model, read_tensors(hf + "/expected.safetensors")["ids"]);

  // Back to Hugging Face: the reference gives qkv's logits there; and to qkv again: the same
  // files byte for byte.
  auto to_hf = c.arch == "gpt2" ? convert::gpt2_to_hf : convert::llama_to_hf;
  to_hf(qkv, back_hf, "best");
  auto want = reference(back_hf, read_tensors(hf + "/expected.safetensors"));
  expect_close(m.model->forward(want["ids"], nn::Context{}).value(), want["logits"], 1e-4,
               "logits of the exported folder");
  from_hf(c.arch)(back_hf, back);
  for (const char* f : {"config.yaml", "model.safetensors", "tokenizer.yaml", "vocab.json",
                        "merges.txt", "spm.model", "tokenizer.json"}) {
    EXPECT_EQ(fs::exists(qkv + "/" + f), fs::exists(back + "/" + f)) << f;
    if (fs::exists(qkv + "/" + f)) {
      EXPECT_TRUE(read_file(qkv + "/" + f) == read_file(back + "/" + f))
          << f << " differs after qkv -> hf -> qkv";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Folders, HfGpt,
    ::testing::Values(
        GptCase{"gpt2_tied", "gpt2", json::object(), json::object()},
        GptCase{"gpt2_untied_gelu_bin_no_prefix",
                "gpt2",
                {{"tie_word_embeddings", false}, {"activation_function", "gelu"}, {"n_inner", 48}},
                {{"format", "bin"}, {"prefix", false}, {"buffers", true}}},
        GptCase{"llama_gqa", "llama", json::object(), json::object()},
        GptCase{"llama_mqa_shards", "llama", {{"num_key_value_heads", 1}}, {{"format", "shards"}}},
        GptCase{"llama_tied_bin",
                "llama",
                {{"tie_word_embeddings", true}, {"num_key_value_heads", 4}},
                {{"format", "bin"}}},
        GptCase{
            "llama_bias", "llama", {{"attention_bias", true}, {"mlp_bias", true}}, json::object()},
        GptCase{"llama_theta_500000",
                "llama",
                {{"rope_theta", 500000.0}, {"hidden_size", 48}, {"intermediate_size", 128}},
                json::object()},
        // Head dim 12: wavelengths 6.3 (kept), 29 (blended) and 135 to 13,500 (divided).
        GptCase{"llama3_rope_scaling",
                "llama",
                {{"hidden_size", 48},
                 {"intermediate_size", 128},
                 {"rope_scaling",
                  {{"rope_type", "llama3"},
                   {"factor", 4.0},
                   {"low_freq_factor", 2.0},
                   {"high_freq_factor", 8.0},
                   {"original_max_position_embeddings", 64}}}},
                {{"tokenizer", "llama3"}}},
        GptCase{"llama_linear_rope_scaling",
                "llama",
                {{"rope_scaling", {{"type", "linear"}, {"factor", 2.0}}}},
                json::object()}),
    [](const auto& info) { return info.param.name; });

// qkv's own models (d-ff 0, a SentencePiece tokenizer whichever the architecture) written as
// Hugging Face folders: the reference gives their logits, and they read back byte for byte.
nn::GptConfig native_config(bool llama) {
  nn::GptConfig c = nn::GptConfig::preset(llama ? "llama-tiny" : "gpt-nano");
  c.vocab_size = kSpmVocab, c.context_length = 32, c.d_model = 32, c.layers = 2, c.heads = 4;
  c.bos_id = 1, c.eos_id = 2;
  if (llama) c.kv_heads = 2, c.tie_embeddings = true, c.rope_theta = 1e5;
  if (!llama) c.mlp = "gelu", c.dropout = 0.1f, c.norm_eps = 1e-6f;
  return c;
}

std::string save_native(const std::string& dir, const nn::GptConfig& c, Rng& rng) {
  nn::Gpt model(c);
  model.init(rng);
  for (auto& [name, p] : model.params())  // not the init's ones and zeros
    if (p.value().rank() == 1) p.mutable_value().copy_from(randn(p.value().shape(), rng, 0.3f));
  model_dir::save_gpt_dir(dir, c, model.params());
  for (const auto& f : fs::directory_iterator(spm_dir())) fs::copy(f.path(), dir);
  return dir;
}

TEST(GptToHf, QkvModelsGiveTheirLogitsThereAndReadBackByteForByte) {
  ScratchDir dir("gpt_to_hf");
  Rng rng(4);
  for (bool llama : {false, true}) {
    std::string name = llama ? "llama" : "gpt2";
    std::string qkv = save_native(dir.file(name), native_config(llama), rng);
    std::string hf = dir.file(name + "_hf"), back = dir.file(name + "_back");
    auto to_hf = llama ? convert::llama_to_hf : convert::gpt2_to_hf;
    to_hf(qkv, hf, "best");
    json config = json::parse(std::ifstream(hf + "/config.json"));
    EXPECT_EQ(config["architectures"][0], llama ? "LlamaForCausalLM" : "GPT2LMHeadModel");
    json tok = json::parse(std::ifstream(hf + "/tokenizer_config.json"));
    EXPECT_EQ(tok["add_bos_token"], true);
    EXPECT_EQ(tok["bos_token"], "<s>");
    EXPECT_EQ(tok["eos_token"], "</s>");
    model_dir::LanguageModel m = model_dir::load_language_model_dir(qkv);
    Tensor ids = rand_ids({2, 9}, kSpmVocab, rng);
    auto want =
        reference(hf, {{"ids", ids},
                       {"prompt_ids", rows(ids, 0, 2, 4)},
                       {"prompt_lengths", Tensor::from_vector(std::vector<int32_t>{4, 2}, {2})},
                       {"new_tokens", Tensor::from_vector(std::vector<int32_t>{3}, {1})}});
    expect_reference_outputs(*m.model, want);
    (llama ? convert::llama_from_hf : convert::gpt2_from_hf)(hf, back);
    for (const char* f : {"config.yaml", "model.safetensors", "tokenizer.yaml", "spm.model"})
      EXPECT_TRUE(read_file(qkv + "/" + f) == read_file(back + "/" + f)) << name << ": " << f;
  }
}

TEST(GptToHf, RefusesWhatTheArchitectureCannotExpressByName) {
  ScratchDir dir("gpt_to_hf_refused");
  Rng rng(6);
  nn::GptConfig c = native_config(false);
  c.mlp = "swiglu";
  std::string swiglu = save_native(dir.file("swiglu"), c, rng);
  expect_error<std::runtime_error>([&] { convert::gpt2_to_hf(swiglu, dir.file("a")); },
                                   {"GPT2LMHeadModel needs mlp gelu_tanh or gelu, not swiglu"});
  c = native_config(true);
  c.norm = "layernorm";
  std::string layernorm = save_native(dir.file("layernorm"), c, rng);
  expect_error<std::runtime_error>([&] { convert::llama_to_hf(layernorm, dir.file("b")); },
                                   {"LlamaForCausalLM needs norm rmsnorm, not layernorm"});
  c = native_config(false);
  c.kv_heads = 2;
  std::string gqa = save_native(dir.file("gqa"), c, rng);
  expect_error<std::runtime_error>([&] { convert::gpt2_to_hf(gqa, dir.file("c")); },
                                   {"needs kv-heads 0 or 4, not 2"});
  // A character tokenizer has no Hugging Face class.
  nn::GptConfig chars_config = native_config(false);
  auto chars = data::LmTokenizer::train("chars", english_lines(50), {});
  chars_config.vocab_size = chars->vocab_size(), chars_config.bos_id = chars->bos_id();
  chars_config.eos_id = chars->eos_id();
  std::string with_chars = dir.file("chars");
  nn::Gpt model(chars_config);
  model_dir::save_gpt_dir(with_chars, chars_config, model.params());
  chars->save(with_chars);
  expect_error<std::runtime_error>([&] { convert::gpt2_to_hf(with_chars, dir.file("d")); },
                                   {"no tokenizer class for a chars tokenizer"});
}

}  // namespace
}  // namespace qkv::test
